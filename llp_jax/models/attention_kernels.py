"""The accelerator kernels behind `attention.attend`: cuDNN on GPU, splash attention on TPU.

Both take the same `MaskSpec` (models/masks.py) as the XLA paths. `attention.attend` dispatches here when `impl` asks for a
kernel and `resolve_impl`/the `*_supported` checks say it can run; otherwise it falls back to the
XLA path with a logged reason. On CPU, `cudnn_attention(..., implementation='xla')` and
`splash_attention(..., interpret=True)` let the tests check both against the reference.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from llp_jax.models.masks import MaskSpec, Windows, blockable, is_static_range


# ----------------------------------------------------------------------------- cuDNN (GPU)
def cudnn_supported(q: jax.Array) -> str | None:
    """None if cuDNN flash attention takes `q`'s dtype and head size, else why it does not."""
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        return f"cuDNN attention needs bfloat16/float16 inputs, got {q.dtype}"
    if q.shape[-1] % 8 or q.shape[-1] > 128:
        return f"cuDNN attention needs a head size divisible by 8 and <= 128, got {q.shape[-1]}"
    return None


def cudnn_attention(q, k, v, mask: MaskSpec, q_pos, k_pos, *, implementation: str = "cudnn"):
    """`jax.nn.dot_product_attention` under `mask`, without n x n masks for segment masks.

    Segment masks run on the segment-batched windows: the blocks of each run with one shared
    window mask are folded into the batch axis and given that [s, W] mask (or `is_causal`
    when it is the square causal triangle, or nothing when it is all true). Other masks: the
    built-in causal mask when queries and keys share contiguous positions, else the boolean
    mask built in-graph from positions. `implementation='xla'` runs the same decomposition with
    jax's XLA kernel, which is how CPU tests check it.
    """
    dpa = functools.partial(jax.nn.dot_product_attention, implementation=implementation)
    if blockable(mask, q, q_pos, k_pos):
        w = Windows.make(mask, int(q_pos[0]), q.shape[1])
        qb, kw, vw = w.split(q), w.window(k), w.window(v)
        B, _, s, H, D = qb.shape
        outs = []
        for b0, b1, m_SxW in w.runs(mask):
            r = b1 - b0
            qr = qb[:, b0:b1].reshape(B * r, s, H, D)
            kr, vr = (x[:, b0:b1].reshape(B * r, x.shape[2], H, D) for x in (kw, vw))
            if m_SxW.all():
                o = dpa(qr, kr, vr)
            elif m_SxW.shape[0] == m_SxW.shape[1] and np.array_equal(m_SxW, np.tri(s, dtype=bool)):
                o = dpa(qr, kr, vr, is_causal=True)
            else:
                o = dpa(qr, kr, vr, mask=jnp.asarray(m_SxW)[None, None])
            outs.append(o.reshape(B, r, s, H, D))
        return w.merge(jnp.concatenate(outs, axis=1))
    plain_causal = mask == MaskSpec(causal=True)
    static = is_static_range(q_pos) and is_static_range(k_pos)
    if plain_causal and static and np.array_equal(q_pos, k_pos):
        return dpa(q, k, v, is_causal=True)
    allowed = mask.allowed(jnp.asarray(q_pos), jnp.asarray(k_pos))
    return dpa(q, k, v, mask=jnp.broadcast_to(allowed, (1, 1, *allowed.shape[-2:])))


def cudnn_windows(q_BxNxSxHxD, k_BxNxWxHxD, v_BxNxWxHxD, allowed_NxSxW, *,
                  implementation: str = "cudnn"):  # fmt: skip
    """Query blocks against their own key windows (`attention.attend_windows`): the blocks are
    folded into the batch axis and each gets its [S, W] mask (which may be traced)."""
    B, N, S, H, D = q_BxNxSxHxD.shape
    W = k_BxNxWxHxD.shape[2]
    fold = lambda x: x.reshape(B * N, x.shape[2], H, D)
    mask = jnp.broadcast_to(jnp.asarray(allowed_NxSxW), (B, N, S, W)).reshape(B * N, 1, S, W)
    out = jax.nn.dot_product_attention(
        fold(q_BxNxSxHxD), fold(k_BxNxWxHxD), fold(v_BxNxWxHxD), mask=mask,
        implementation=implementation,
    )  # fmt: skip
    return out.reshape(B, N, S, H, D)


# ----------------------------------------------------------------------------- splash (TPU)
@functools.cache
def splash_module():
    """Pallas TPU splash attention (kernel, mask modules), or None where jax lacks it."""
    try:
        from jax.experimental.pallas.ops.tpu.splash_attention import (
            splash_attention_kernel as kernel,
        )
        from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks
    except ImportError:  # pragma: no cover - depends on the jax build
        return None
    return kernel, masks


def splash_block(Tq: int, Tk: int) -> int | None:
    """The largest splash block size (512, 256 or 128) dividing both lengths, else None."""
    return next((b for b in (512, 256, 128) if Tq % b == 0 and Tk % b == 0), None)


def splash_mask(mask: MaskSpec, q0: int, k0: int, Tq: int, Tk: int):
    """A lazy splash mask for queries at q0..q0+Tq-1 and keys at k0..k0+Tk-1: computed from
    `MaskSpec.rule` on index blocks (in the kernel and in splash's block-sparsity analysis),
    never materialised as a Tq x Tk array."""
    _, masks = splash_module()

    class _SpecMask(masks._ComputableMask):
        def __init__(self):
            super().__init__((Tq, Tk), lambda qi, ki: mask.rule(qi + q0, ki + k0))
            self.key = (mask, q0, k0, Tq, Tk)

        def __eq__(self, other):
            return isinstance(other, masks._ComputableMask) and getattr(other, "key", 0) == self.key

        def __hash__(self):
            return hash(self.key)

    return _SpecMask()


@functools.lru_cache(maxsize=64)
def _splash_kernel(mask: MaskSpec, q0: int, k0: int, Tq: int, Tk: int, H: int, interpret: bool):
    kernel, masks = splash_module()
    b = splash_block(Tq, Tk)
    sizes = kernel.BlockSizes(
        block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b, block_kv_dkv=b,
        block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b,
    )  # fmt: skip
    multi = masks.MultiHeadMask([splash_mask(mask, q0, k0, Tq, Tk)] * H)
    return kernel.make_splash_mha(
        multi, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret
    )


def splash_supported(q, k, q_pos, k_pos) -> str | None:
    """None if the splash path takes these inputs, else the reason it does not."""
    if splash_module() is None:
        return "this jax has no Pallas splash attention"
    if q.ndim != 4 or not (is_static_range(q_pos) and is_static_range(k_pos)):
        return "splash needs [B, T, H, D] inputs at static contiguous positions"
    if splash_block(q.shape[1], k.shape[1]) is None:
        return f"splash needs lengths divisible by 128, got {q.shape[1]} and {k.shape[1]}"
    return None


def splash_attention(q, k, v, mask: MaskSpec, q_pos, k_pos, *, interpret: bool = False,
                     segment_ids=None):  # fmt: skip
    """Splash attention (TPU; `interpret=True` runs the same kernel on CPU for tests); document
    ids (q [B, Q], k [B, K]) go to the kernel's own SegmentIds."""
    _, Tq, H, D = q.shape
    kern = _splash_kernel(mask, int(q_pos[0]), int(k_pos[0]), Tq, k.shape[1], H, interpret)
    to_heads = lambda x: jnp.swapaxes(x, 1, 2)  # [B, T, H, D] <-> [B, H, T, D]
    args = (to_heads(q * D**-0.5), to_heads(k), to_heads(v))
    if segment_ids is None:
        out = jax.vmap(kern)(*args)
    else:
        kernel, _ = splash_module()
        ids = kernel.SegmentIds(q=segment_ids[0].astype(jnp.int32),
                                kv=segment_ids[1].astype(jnp.int32))  # fmt: skip
        out = jax.vmap(lambda q_, k_, v_, s_: kern(q_, k_, v_, segment_ids=s_))(*args, ids)
    return to_heads(out).astype(q.dtype)
