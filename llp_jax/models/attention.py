"""The one attention primitive of the zoo and its mask vocabulary.

Every model states *what* it attends to as a `MaskSpec` over absolute token positions; `attend`
decides *how*, by `impl`:
  * 'xla' (any backend): segment masks (LLP, S^2-Attn) take the blocked path, each query block
    against its window of key blocks, so neither an n x n mask nor an n x n score matrix exists;
    other masks are built in-graph from positions (iota comparisons XLA fuses into the softmax).
  * 'cudnn' (GPU): `jax.nn.dot_product_attention(implementation='cudnn')`; segment masks run on
    the same segment-batched windows, blocks that share one small mask batched together.
  * 'splash' (TPU): Pallas splash attention with a lazily computed mask (block-sparse: blocks
    outside the segment window are skipped, never loaded).
  * 'auto': cudnn on GPU, splash on TPU, xla elsewhere.
  * 'reference': the explicit full boolean mask, the plain path every fast path is tested against.
A fast path that cannot run (wrong backend, float32 on cuDNN, attention dropout, shapes the
kernel does not take) falls back to 'xla', with one logged warning per reason.

Positions are passed as arrays. NumPy arrays are static (known while tracing), which lets `attend`
pick the blocked path; jax arrays (e.g. streaming offsets inside a `lax.scan`) always take the
explicit-mask path over the (small) window they describe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Positions = np.ndarray | jax.Array
IMPLEMENTATIONS = ("xla", "reference", "cudnn", "splash", "auto")

log = logging.getLogger(__name__)
_warned: set[str] = set()
_recorders: list[list] = []


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """Which key positions each query position may see. Key positions < 0 are padding, never seen.

    For a query at position q and a key at position k:
      * history queries (q < prefix): k < prefix, in the same `prefix_block` if set, and k <= q
        unless `prefix_causal` is False (the authors' bidirectional history of V1..V3);
      * all other queries: k <= q if `causal`; and if `block` is set, the key's block
        (k + block_shift) // block lies at most `blocks_back` blocks before the query's.

    Attributes:
      causal: keys must not be later than the query.
      block: length of the local blocks (LLP segment s, S^2-Attn group G); None = global.
      blocks_back: previous blocks visible (LLP: k previous segments; S^2: 0).
      block_shift: shifts block boundaries left by this many positions (S^2's shifted heads).
      prefix: length of the history region with its own rule (V1..V3: m); 0 = none.
      prefix_block: the history is split into independent blocks of this length (V2).
      prefix_causal: causal attention inside the history region.
    """

    causal: bool = True
    block: int | None = None
    blocks_back: int = 0
    block_shift: int = 0
    prefix: int = 0
    prefix_block: int | None = None
    prefix_causal: bool = True

    def rule(self, q, k):
        """The mask on broadcastable position arrays q, k (NumPy or jax, also inside kernels)."""
        xp = np if isinstance(q, np.ndarray) and isinstance(k, np.ndarray) else jnp
        main = xp.ones(xp.broadcast_shapes(q.shape, k.shape), bool)
        if self.causal:
            main = main & (k <= q)
        if self.block is not None:
            delta = (q + self.block_shift) // self.block - (k + self.block_shift) // self.block
            main = main & (delta >= 0) & (delta <= self.blocks_back)
        if self.prefix:
            hist = k < self.prefix
            if self.prefix_block is not None:
                hist = hist & (q // self.prefix_block == k // self.prefix_block)
            if self.prefix_causal:
                hist = hist & (k <= q)
            main = xp.where(q < self.prefix, hist, main)
        return main & (k >= 0)

    def allowed(self, q_pos: Positions, k_pos: Positions):
        """Boolean [..., Tq, Tk] matrix: may query q_pos[..., i] see key k_pos[..., j].

        NumPy in, NumPy out (a static constant under jit); jax arrays in, jax array out.
        """
        xp = np if isinstance(q_pos, np.ndarray) and isinstance(k_pos, np.ndarray) else jnp
        return self.rule(xp.asarray(q_pos)[..., :, None], xp.asarray(k_pos)[..., None, :])

    def pairs(self, q_pos: Positions, k_pos: Positions, chunk: int = 1024) -> int:
        """Exact number of attended (query, key) pairs (counted over `chunk` queries at a time, so
        long sequences never need the whole Tq x Tk matrix).

        This counts causal pairs exactly; MODELS.md's cost formulas count whole blocks (for LLP,
        s*(2n - s) per layer = the window with the current segment in full), which is what a
        blocked kernel computes. For LLP the two differ by the masked half of the current
        segment, n*(s - 1)/2.
        """
        q_pos, k_pos = np.asarray(q_pos), np.asarray(k_pos)
        if q_pos.ndim != 1:
            return int(np.asarray(self.allowed(q_pos, k_pos)).sum())
        rows = (self.allowed(q_pos[i : i + chunk], k_pos) for i in range(0, len(q_pos), chunk))
        return int(sum(int(r.sum()) for r in rows))


# ----------------------------------------------------------------------------- dispatch helpers
def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        log.warning("attention: %s; using impl='xla'", reason)


def resolve_impl(impl: str, backend: str | None = None) -> str:
    """The implementation `impl` means on `backend` (default: jax's): 'auto' picks the backend's
    kernel; 'cudnn' off a GPU and 'splash' off a TPU become 'xla' (warned once)."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"attention impl={impl!r} must be one of {IMPLEMENTATIONS}")
    backend = backend or jax.default_backend()
    on_gpu, on_tpu = backend in ("gpu", "cuda"), backend == "tpu"
    if impl == "auto":
        return "cudnn" if on_gpu else "splash" if on_tpu and _splash_module() else "xla"
    if impl == "cudnn" and not on_gpu:
        _warn_once(f"impl='cudnn' needs a GPU (backend is {backend})")
        return "xla"
    if impl == "splash" and not (on_tpu and _splash_module()):
        _warn_once(f"impl='splash' needs a TPU and Pallas splash attention (backend {backend})")
        return "xla"
    return impl


@contextlib.contextmanager
def recording() -> Iterator[list]:
    """Records every top-level `attend` call traced inside the block as (mask, q_pos, k_pos):
    lets tools count attention pairs from the masks models really use (e.g. under eval_shape).
    A scanned layer stack is traced once, so its call appears once."""
    calls: list = []
    _recorders.append(calls)
    try:
        yield calls
    finally:
        _recorders.remove(calls)


def _is_static_range(pos: Positions) -> bool:
    return (
        isinstance(pos, np.ndarray)
        and pos.ndim == 1
        and bool(np.all(np.diff(pos) == 1) if pos.size > 1 else True)
    )


def _blockable(mask: MaskSpec, q, q_pos, k_pos) -> bool:
    """Segment mask, 4-D inputs, and queries and keys at the same contiguous static positions."""
    return (
        mask.block is not None
        and not mask.prefix
        and q.ndim == 4
        and _is_static_range(q_pos)
        and _is_static_range(k_pos)
        and q_pos.shape == k_pos.shape
        and (q_pos.size == 0 or q_pos[0] == k_pos[0])
    )


def _dense(q, k, v, mask_QxK, dropout_rate, rng):
    """Softmax attention with an explicit boolean mask; q: [..., Q, H, D], k/v: [..., K, H, D]."""
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("...qhd,...khd->...hqk", q * scale, k, preferred_element_type=jnp.float32)
    mask = jnp.expand_dims(mask_QxK, -3)  # broadcast over heads
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1)
    if rng is not None and dropout_rate > 0.0:
        keep = jax.random.bernoulli(rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    return jnp.einsum("...hqk,...khd->...qhd", probs.astype(v.dtype), v)


# ----------------------------------------------------------------------------- segment windows
@dataclasses.dataclass(frozen=True)
class Windows:
    """Static layout of the segment-batched form of a block mask over T contiguous positions.

    The sequence is padded by `lead` positions in front (so block boundaries fall on array
    boundaries) and `trail` behind, giving `nb` blocks of `s`; block b's window holds key blocks
    b - back .. b (W = (back + 1) * s keys). Padding keys have position -1 (never attended).
    """

    s: int
    back: int
    lead: int
    trail: int
    nb: int
    q_pos_NbxS: np.ndarray
    k_pos_NbxW: np.ndarray

    @classmethod
    def make(cls, mask: MaskSpec, offset: int, T: int) -> Windows:
        s, back = mask.block, mask.blocks_back
        lead = (offset + mask.block_shift) % s
        nb = -(-(lead + T) // s)
        trail = nb * s - lead - T
        pos = np.arange(nb * s) - lead + offset
        valid = (pos >= offset) & (pos < offset + T)
        k_blocks = np.where(valid, pos, -1).reshape(nb, s)
        shifted = [
            np.concatenate([np.full((j, s), -1), k_blocks])[:nb] for j in range(back, -1, -1)
        ]
        return cls(s, back, lead, trail, nb, pos.reshape(nb, s), np.concatenate(shifted, axis=1))

    def split(self, x_BxTxHxD: jax.Array) -> jax.Array:
        """[B, T, H, D] -> [B, nb, s, H, D] (padded)."""
        B, _, H, D = x_BxTxHxD.shape
        x = jnp.pad(x_BxTxHxD, ((0, 0), (self.lead, self.trail), (0, 0), (0, 0)))
        return x.reshape(B, self.nb, self.s, H, D)

    def window(self, x_BxTxHxD: jax.Array) -> jax.Array:
        """[B, T, H, D] -> [B, nb, W, H, D]: each block's keys, the earlier blocks first."""
        xb = self.split(x_BxTxHxD)
        pad = lambda j: jnp.pad(xb, ((0, 0), (j, 0), (0, 0), (0, 0), (0, 0)))[:, : self.nb]
        return jnp.concatenate([pad(j) for j in range(self.back, -1, -1)], axis=2)

    def merge(self, o_BxNbxSxHxD: jax.Array) -> jax.Array:
        """[B, nb, s, H, D] -> [B, T, H, D] (padding dropped)."""
        B, _, _, H, D = o_BxNbxSxHxD.shape
        o = o_BxNbxSxHxD.reshape(B, self.nb * self.s, H, D)
        return o[:, self.lead : self.nb * self.s - self.trail]

    def block_masks(self, mask: MaskSpec) -> np.ndarray:
        """bool [nb, s, W]: the (static, linear-size) mask of every block's window."""
        return mask.allowed(self.q_pos_NbxS, self.k_pos_NbxW)

    def runs(self, mask: MaskSpec) -> list[tuple[int, int, np.ndarray]]:
        """Maximal runs [b0, b1) of consecutive blocks whose window masks are identical, with
        that mask: a kernel taking one small mask then serves a whole run (for LLP: the first
        `back` blocks, the interior, and a ragged last block)."""
        masks = self.block_masks(mask)
        out, b0 = [], 0
        for b in range(1, self.nb + 1):
            if b == self.nb or not np.array_equal(masks[b], masks[b0]):
                out.append((b0, b, masks[b0]))
                b0 = b
        return out


def _blocked(q, k, v, mask: MaskSpec, offset: int, dropout_rate, rng):
    """Block-local attention: each query block against its window of `blocks_back + 1` key
    blocks. Cost and memory O(n * block * (blocks_back + 1)); the window mask is computed in-graph
    from positions, so no mask or score matrix ever has n x n entries."""
    w = Windows.make(mask, offset, q.shape[1])
    allowed_NbxSxW = mask.rule(
        jnp.asarray(w.q_pos_NbxS, jnp.int32)[:, :, None],
        jnp.asarray(w.k_pos_NbxW, jnp.int32)[:, None, :],
    )
    out = _dense(w.split(q), w.window(k), w.window(v), allowed_NbxSxW, dropout_rate, rng)
    return w.merge(out)


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
    if _blockable(mask, q, q_pos, k_pos):
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
    static = _is_static_range(q_pos) and _is_static_range(k_pos)
    if plain_causal and static and np.array_equal(q_pos, k_pos):
        return dpa(q, k, v, is_causal=True)
    allowed = mask.allowed(jnp.asarray(q_pos), jnp.asarray(k_pos))
    return dpa(q, k, v, mask=jnp.broadcast_to(allowed, (1, 1, *allowed.shape[-2:])))


# ----------------------------------------------------------------------------- splash (TPU)
@functools.cache
def _splash_module():
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
    _, masks = _splash_module()

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
    kernel, masks = _splash_module()
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
    if _splash_module() is None:
        return "this jax has no Pallas splash attention"
    if q.ndim != 4 or not (_is_static_range(q_pos) and _is_static_range(k_pos)):
        return "splash needs [B, T, H, D] inputs at static contiguous positions"
    if splash_block(q.shape[1], k.shape[1]) is None:
        return f"splash needs lengths divisible by 128, got {q.shape[1]} and {k.shape[1]}"
    return None


def splash_attention(q, k, v, mask: MaskSpec, q_pos, k_pos, *, interpret: bool = False):
    """Splash attention (TPU; `interpret=True` runs the same kernel on CPU for tests)."""
    _, Tq, H, D = q.shape
    kern = _splash_kernel(mask, int(q_pos[0]), int(k_pos[0]), Tq, k.shape[1], H, interpret)
    to_heads = lambda x: jnp.swapaxes(x, 1, 2)  # [B, T, H, D] <-> [B, H, T, D]
    out = jax.vmap(kern)(to_heads(q * D**-0.5), to_heads(k), to_heads(v))
    return to_heads(out).astype(q.dtype)


# ----------------------------------------------------------------------------- the primitive
def attend(
    q_BxQxHxD: jax.Array,
    k_BxKxHxD: jax.Array,
    v_BxKxHxD: jax.Array,
    mask: MaskSpec | Sequence[MaskSpec],
    *,
    q_pos: Positions,
    k_pos: Positions,
    impl: str = "xla",
    dropout_rate: float = 0.0,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Multi-head attention under `mask`; returns [B, Q, H, D].

    Args:
      q_BxQxHxD, k_BxKxHxD, v_BxKxHxD: queries (unscaled), keys and values.
      mask: one MaskSpec, or one per equal group of heads (S^2-Attn's shifted half).
      q_pos, k_pos: absolute positions of queries and keys (NumPy = static, see module doc).
      impl: one of IMPLEMENTATIONS (see the module docstring).
      dropout_rate, rng: dropout on attention probabilities; rng None = deterministic. The
        cuDNN and splash kernels have no attention dropout: with it active they use 'xla'.
    """
    for calls in _recorders:
        calls.append((mask, q_pos, k_pos))
    if not isinstance(mask, MaskSpec):
        groups = len(mask)
        qs, ks, vs = (jnp.split(x, groups, axis=2) for x in (q_BxQxHxD, k_BxKxHxD, v_BxKxHxD))
        rngs = [None] * groups if rng is None else list(jax.random.split(rng, groups))
        with _paused_recording():
            outs = [
                attend(qg, kg, vg, m, q_pos=q_pos, k_pos=k_pos, impl=impl,
                       dropout_rate=dropout_rate, rng=r)
                for qg, kg, vg, m, r in zip(qs, ks, vs, mask, rngs)
            ]  # fmt: skip
        return jnp.concatenate(outs, axis=2)

    q, k, v = q_BxQxHxD, k_BxKxHxD, v_BxKxHxD
    if impl == "reference":
        return _dense(q, k, v, mask.allowed(q_pos, k_pos), dropout_rate, rng)
    impl = resolve_impl(impl)
    dropout = rng is not None and dropout_rate > 0.0
    if impl == "cudnn":
        why = "attention dropout is on" if dropout else cudnn_supported(q)
        if why is None:
            return cudnn_attention(q, k, v, mask, q_pos, k_pos)
        _warn_once(f"cuDNN skipped: {why}")
    if impl == "splash":
        why = "attention dropout is on" if dropout else splash_supported(q, k, q_pos, k_pos)
        if why is None:
            return splash_attention(q, k, v, mask, q_pos, k_pos)
        _warn_once(f"splash skipped: {why}")
    if _blockable(mask, q, q_pos, k_pos):
        return _blocked(q, k, v, mask, int(q_pos[0]) if q_pos.size else 0, dropout_rate, rng)
    # In-graph mask from positions: XLA fuses the comparisons into the masked softmax.
    allowed = mask.allowed(jnp.asarray(q_pos), jnp.asarray(k_pos))
    return _dense(q, k, v, allowed, dropout_rate, rng)


@contextlib.contextmanager
def _paused_recording():
    """Head-group sub-calls are part of one recorded call: hide them from recorders."""
    saved = list(_recorders)
    _recorders.clear()
    try:
        yield
    finally:
        _recorders.extend(saved)
