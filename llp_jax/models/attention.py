"""The one attention primitive of the zoo and its mask vocabulary.

Every model states *what* it attends to as a `MaskSpec` over absolute token positions; `attend`
decides *how*: a block-local fast path that never builds an n x n mask when the mask is a segment
window (LLP, S^2-Attn), `jax.nn.dot_product_attention` (cuDNN) on GPU, or the explicit-mask
reference path that the tests compare every fast path against.

Positions are passed as arrays. NumPy arrays are static (known while tracing), which lets `attend`
pick the blocked path; jax arrays (e.g. streaming offsets inside a `lax.scan`) always take the
explicit-mask path over the (small) window they describe.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Positions = np.ndarray | jax.Array


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

    def allowed(self, q_pos: Positions, k_pos: Positions):
        """Boolean [..., Tq, Tk] matrix: may query q_pos[..., i] see key k_pos[..., j].

        NumPy in, NumPy out (a static constant under jit); jax arrays in, jax array out.
        """
        xp = np if isinstance(q_pos, np.ndarray) and isinstance(k_pos, np.ndarray) else jnp
        q = xp.asarray(q_pos)[..., :, None]
        k = xp.asarray(k_pos)[..., None, :]
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

    def pairs(self, q_pos: Positions, k_pos: Positions) -> int:
        """Number of attended (query, key) pairs: the cost measure of MODELS.md."""
        return int(np.asarray(self.allowed(q_pos, k_pos)).sum())


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


def _is_static_range(pos: Positions) -> bool:
    return (
        isinstance(pos, np.ndarray)
        and pos.ndim == 1
        and bool(np.all(np.diff(pos) == 1) if pos.size > 1 else True)
    )


def _blocked(q, k, v, mask: MaskSpec, offset: int, dropout_rate, rng):
    """Block-local attention without an n x n mask: each query block attends to its window of
    `blocks_back + 1` key blocks. Cost O(n * block * (blocks_back + 1)).

    Requires q and k at the same contiguous positions offset..offset+T-1.
    """
    B, T, H, D = q.shape
    s, back = mask.block, mask.blocks_back
    # Pad so that block boundaries fall on array boundaries: `lead` positions before `offset`.
    lead = (offset + mask.block_shift) % s
    nb = -(-(lead + T) // s)
    trail = nb * s - lead - T
    pad = lambda x: jnp.pad(x, ((0, 0), (lead, trail), (0, 0), (0, 0)))  # noqa: E731
    qb = pad(q).reshape(B, nb, s, H, D)
    kb, vb = (pad(x).reshape(B, nb, s, H, D) for x in (k, v))
    # Keys for block b: blocks b-back..b, gathered by shifting the blocked array right.
    shifted = lambda x, j: jnp.pad(x, ((0, 0), (j, 0), (0, 0), (0, 0), (0, 0)))[:, :nb]  # noqa: E731
    kw = jnp.concatenate([shifted(kb, j) for j in range(back, -1, -1)], axis=2)
    vw = jnp.concatenate([shifted(vb, j) for j in range(back, -1, -1)], axis=2)
    # Static per-block masks from positions: padded (out-of-range) keys get position -1.
    pos = np.arange(nb * s) - lead + offset
    valid = (pos >= offset) & (pos < offset + T)
    q_pos = pos.reshape(nb, s)
    k_pos_blocks = np.where(valid, pos, -1).reshape(nb, s)
    k_pos_NbxW = np.concatenate(
        [np.concatenate([np.full((j, s), -1), k_pos_blocks[: max(nb - j, 0)]])[:nb] for j in range(back, -1, -1)],
        axis=1,
    )
    mask_NbxSxW = mask.allowed(q_pos, k_pos_NbxW)
    out = _dense(qb, kw, vw, mask_NbxSxW, dropout_rate, rng)
    return out.reshape(B, nb * s, H, D)[:, lead : lead + T]


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
      impl: 'xla' (blocked fast path where possible, else explicit mask), 'reference' (always the
        explicit full mask), 'cudnn' (jax.nn.dot_product_attention; no attention dropout).
      dropout_rate, rng: dropout on attention probabilities; rng None = deterministic.
    """
    if not isinstance(mask, MaskSpec):
        groups = len(mask)
        qs, ks, vs = (jnp.split(x, groups, axis=2) for x in (q_BxQxHxD, k_BxKxHxD, v_BxKxHxD))
        rngs = [None] * groups if rng is None else list(jax.random.split(rng, groups))
        outs = [
            attend(qg, kg, vg, m, q_pos=q_pos, k_pos=k_pos, impl=impl,
                   dropout_rate=dropout_rate, rng=r)
            for qg, kg, vg, m, r in zip(qs, ks, vs, mask, rngs)
        ]
        return jnp.concatenate(outs, axis=2)

    if impl == "cudnn" and (rng is None or dropout_rate == 0.0):
        allowed = mask.allowed(q_pos, k_pos)
        return jax.nn.dot_product_attention(
            q_BxQxHxD, k_BxKxHxD, v_BxKxHxD, mask=allowed[None, None], implementation="cudnn"
        )
    if (
        impl == "xla"
        and mask.block is not None
        and not mask.prefix
        and _is_static_range(q_pos)
        and _is_static_range(k_pos)
        and q_pos.shape == k_pos.shape
        and q_pos[0] == k_pos[0]
    ):
        return _blocked(
            q_BxQxHxD, k_BxKxHxD, v_BxKxHxD, mask, int(q_pos[0]), dropout_rate, rng
        )
    return _dense(
        q_BxQxHxD, k_BxKxHxD, v_BxKxHxD, mask.allowed(q_pos, k_pos), dropout_rate, rng
    )
