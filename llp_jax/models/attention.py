"""The one attention primitive of the zoo.

Every model states *what* it attends to as a `MaskSpec` (models/masks.py) over token positions;
`attend` decides *how*, by `impl`:
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
import logging
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from llp_jax.models import attention_kernels as kernels
from llp_jax.models import dropout as dropout_lib
from llp_jax.models import matmul, window_parts
from llp_jax.models.masks import ExampleMask, MaskSpec, Positions, Windows, blockable

IMPLEMENTATIONS = ("xla", "reference", "cudnn", "splash", "auto")

log = logging.getLogger(__name__)
_warned: set[str] = set()
_recorders: list[list] = []


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
    splash_module = kernels.splash_module
    if impl == "auto":
        return "cudnn" if on_gpu else "splash" if on_tpu and splash_module() else "xla"
    if impl == "cudnn" and not on_gpu:
        _warn_once(f"impl='cudnn' needs a GPU (backend is {backend})")
        return "xla"
    if impl == "splash" and not (on_tpu and splash_module()):
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


def _dense(q, k, v, mask_QxK, dropout_rate, rng):
    """Softmax attention with an explicit boolean mask; q: [..., Q, H, D], k/v: [..., K, H, D]."""
    lead = q.shape[:-3]
    if len(lead) > 1:
        # One batch axis: XLA:CPU picks much slower dot layouts for several batch axes when one
        # of them is 1 (the blocked path at batch 1: 2.5x on the probabilities @ values).
        fold = lambda x: x.reshape(-1, *x.shape[-3:])
        mask = jnp.broadcast_to(mask_QxK, (*lead, *np.shape(mask_QxK)[-2:]))
        out = _dense(
            fold(q), fold(k), fold(v), mask.reshape(-1, *mask.shape[-2:]), dropout_rate, rng
        )
        return out.reshape(*lead, *out.shape[-3:])
    scale = q.shape[-1] ** -0.5
    logits = matmul.head_scores(q * scale, k)
    mask = jnp.expand_dims(mask_QxK, -3)  # broadcast over heads
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1)
    if rng is not None and dropout_rate > 0.0:
        probs = dropout_lib.apply(probs, dropout_rate, rng)
    return matmul.head_mix(probs.astype(v.dtype), v)


def _static_1d(*positions) -> bool:
    return all(isinstance(p, np.ndarray) and p.ndim == 1 for p in positions)


# Dense attention over more than this many (query, key) entries runs in query chunks (n > 4096
# for self-attention), so that causal chunks skip the keys they cannot see.
CHUNK_ELEMENTS = 1 << 24
CHUNK_MIN_QUERIES = 128


def _dense_chunked(q, k, v, mask: MaskSpec, q_pos, k_pos, dropout_rate, rng, example):
    """Dense attention one chunk of queries at a time, each chunk attending only to the contiguous
    key range its mask can reach (for a causal mask, the keys up to its last query) and
    rematerialised in the backward pass: about half the work and half the buffer plan of the
    full square for causal self-attention (XLA still overlaps the chunks' backward passes, so
    the plan is not one chunk's). Static positions only; the dense transformer at n = 16k fits
    a 24 GiB machine this way."""
    chunk = max(CHUNK_MIN_QUERIES, CHUNK_ELEMENTS // k.shape[1])
    attend_chunk = jax.checkpoint(_dense, static_argnums=(4,))
    outs = []
    for i in range(0, q.shape[1], chunk):
        qp = q_pos[i : i + chunk]
        cols = np.flatnonzero(mask.allowed(qp, k_pos).any(axis=0))
        lo, hi = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
        allowed = mask.allowed(jnp.asarray(qp), jnp.asarray(k_pos[lo:hi]))
        per_example = example.dense(slice(i, i + chunk), slice(lo, hi))
        if per_example is not None:
            allowed = allowed & per_example
        r = None if rng is None else jax.random.fold_in(rng, i)
        outs.append(
            attend_chunk(q[:, i : i + chunk], k[:, lo:hi], v[:, lo:hi], allowed, dropout_rate, r)
        )
    return jnp.concatenate(outs, axis=1)


def _blocked(q, k, v, mask: MaskSpec, offset: int, dropout_rate, rng, example):
    """Block-local attention: each query block against its window of `blocks_back + 1` key
    blocks. Cost and memory O(n * block * (blocks_back + 1)); no mask or score matrix ever has
    n x n entries.

    The window mask needs no block arithmetic: a window holds exactly the key blocks the query
    block may see, so only causality and padding remain, and both factor. Query row i sees
    window slot j iff j <= i + blocks_back * s (the same [s, W] triangle for every block), and
    padding depends on the block and slot only ([nb, W]): their broadcast AND fuses into the
    masked softmax at one operation per score, whatever nb is.
    """
    w = Windows.make(mask, offset, q.shape[1])
    W = w.k_pos_NbxW.shape[1]
    keys_NbxW = w.k_pos_NbxW >= 0
    allowed = jnp.asarray(keys_NbxW)[:, None, :]
    if mask.causal:
        slots = np.arange(W)[None, :] <= np.arange(w.s)[:, None] + w.back * w.s
        allowed = allowed & jnp.asarray(slots)[None]
    per_example = example.windows(w)  # [B, nb, s, W] or None
    if per_example is not None:
        allowed = allowed & per_example
    parts = window_parts.window_parts(
        w, w.split(q), w.split(k), w.split(v), allowed, dropout_rate, rng
    )
    return w.merge(parts)


def attend_windows(
    q_BxNxSxHxD: jax.Array,
    k_BxNxWxHxD: jax.Array,
    v_BxNxWxHxD: jax.Array,
    allowed_NxSxW,
    *,
    impl: str = "xla",
    dropout_rate: float = 0.0,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Each of N query blocks against its own window of W keys; returns [B, N, S, H, D].

    The form every block mask runs in (`Windows`); callers that assemble windows themselves (the
    sequence-parallel LLP, whose windows start with keys received from a neighbour device) use
    it directly. `allowed_NxSxW` broadcasts to [N, S, W] and may be traced, so 'splash' (static
    masks only) runs as 'xla' here.
    """
    impl = "xla" if impl == "reference" else resolve_impl(impl)
    q, k, v = q_BxNxSxHxD, k_BxNxWxHxD, v_BxNxWxHxD
    dropout = rng is not None and dropout_rate > 0.0
    if impl == "cudnn":
        why = "attention dropout is on" if dropout else kernels.cudnn_supported(q)
        if why is None:
            return kernels.cudnn_windows(q, k, v, allowed_NxSxW)
        _warn_once(f"cuDNN skipped: {why}")
    if impl == "splash":
        _warn_once("splash skipped: hand-built windows have a traced mask")
    return _dense(q, k, v, allowed_NxSxW, dropout_rate, rng)


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
    example: ExampleMask | None = None,
) -> jax.Array:
    """Multi-head attention under `mask`; returns [B, Q, H, D].

    Args:
      q_BxQxHxD, k_BxKxHxD, v_BxKxHxD: queries (unscaled), keys and values.
      mask: one MaskSpec, or one per equal group of heads (S^2-Attn's shifted half).
      q_pos, k_pos: absolute positions of queries and keys (NumPy = static, see module doc).
      impl: one of IMPLEMENTATIONS (see the module docstring).
      dropout_rate, rng: dropout on attention probabilities; rng None = deterministic. The
        cuDNN and splash kernels have no attention dropout: with it active they use 'xla'.
      example: the per-example part of the mask (`ExampleMask`: a key mask, e.g. PerceiverAR's
        cross-attend dropout; document ids, `ModelConfig.document_mask`). Splash takes document
        ids; otherwise the kernels use 'xla' when it is given.
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
                       dropout_rate=dropout_rate, rng=r, example=example)
                for qg, kg, vg, m, r in zip(qs, ks, vs, mask, rngs)
            ]  # fmt: skip
        return jnp.concatenate(outs, axis=2)

    q, k, v = q_BxQxHxD, k_BxKxHxD, v_BxKxHxD
    example = example or ExampleMask()
    keys = lambda m: m if example.empty else m & example.dense()  # noqa: E731
    if impl == "reference":
        return _dense(q, k, v, keys(mask.allowed(q_pos, k_pos)), dropout_rate, rng)
    impl = resolve_impl(impl)
    dropout = rng is not None and dropout_rate > 0.0
    if example.key_mask is not None and impl in ("cudnn", "splash"):
        _warn_once(f"{impl} skipped: a per-example key mask is on")
        impl = "xla"
    if example.q_segments is not None and impl == "cudnn":
        _warn_once("cuDNN skipped: document (segment) ids are on")
        impl = "xla"
    if impl == "cudnn":
        why = "attention dropout is on" if dropout else kernels.cudnn_supported(q)
        if why is None:
            return kernels.cudnn_attention(q, k, v, mask, q_pos, k_pos)
        _warn_once(f"cuDNN skipped: {why}")
    if impl == "splash":
        why = "attention dropout is on" if dropout else kernels.splash_supported(q, k, q_pos, k_pos)
        if why is None:
            segments = None if example.q_segments is None else (
                example.q_segments, example.k_segments)  # fmt: skip
            return kernels.splash_attention(q, k, v, mask, q_pos, k_pos, segment_ids=segments)
        _warn_once(f"splash skipped: {why}")
    if blockable(mask, q, q_pos, k_pos):
        offset = int(q_pos[0]) if q_pos.size else 0
        return _blocked(q, k, v, mask, offset, dropout_rate, rng, example)
    if q.ndim == 4 and q.shape[1] * k.shape[1] > CHUNK_ELEMENTS and _static_1d(q_pos, k_pos):
        return _dense_chunked(q, k, v, mask, q_pos, k_pos, dropout_rate, rng, example)
    # In-graph mask from positions: XLA fuses the comparisons into the masked softmax.
    allowed = mask.allowed(jnp.asarray(q_pos), jnp.asarray(k_pos))
    return _dense(q, k, v, keys(allowed), dropout_rate, rng)


@contextlib.contextmanager
def _paused_recording():
    """Head-group sub-calls are part of one recorded call: hide them from recorders."""
    saved = list(_recorders)
    _recorders.clear()
    try:
        yield
    finally:
        _recorders.extend(saved)
