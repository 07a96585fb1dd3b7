"""The mask vocabulary of the zoo: `MaskSpec` (who may see whom, by position) and `Windows` (the
segment-batched layout that block masks run on without any n x n array).

Every model states *what* it attends to as a `MaskSpec` over token positions; `attention.attend`
decides *how*. Both classes are pure NumPy/jax arithmetic on positions, so the XLA paths, the
accelerator kernels and the explicit reference path all read the same rule.
"""

from __future__ import annotations

import dataclasses

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

        This counts causal pairs exactly; docs/models.md's cost formulas count whole blocks (for LLP,
        s*(2n - s) per layer = the window with the current segment in full), which is what a
        blocked kernel computes. For LLP the two differ by the masked half of the current
        segment, n*(s - 1)/2.
        """
        q_pos, k_pos = np.asarray(q_pos), np.asarray(k_pos)
        if q_pos.ndim != 1:
            return int(np.asarray(self.allowed(q_pos, k_pos)).sum())
        rows = (self.allowed(q_pos[i : i + chunk], k_pos) for i in range(0, len(q_pos), chunk))
        return int(sum(int(r.sum()) for r in rows))


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


def is_static_range(pos: Positions) -> bool:
    return (
        isinstance(pos, np.ndarray)
        and pos.ndim == 1
        and bool(np.all(np.diff(pos) == 1) if pos.size > 1 else True)
    )


def blockable(mask: MaskSpec, q, q_pos, k_pos) -> bool:
    """Segment mask, 4-D inputs, and queries and keys at the same contiguous static positions."""
    return (
        mask.block is not None
        and not mask.prefix
        and q.ndim == 4
        and is_static_range(q_pos)
        and is_static_range(k_pos)
        and q_pos.shape == k_pos.shape
        and (q_pos.size == 0 or q_pos[0] == k_pos[0])
    )


@dataclasses.dataclass(frozen=True)
class ExampleMask:
    """The per-example part of a mask, on top of a `MaskSpec`: arrays, not rules.

    Attributes:
      key_mask: bool [B, K], False hides a key from every query of its row (PerceiverAR's
        cross-attend dropout); None = all keys.
      q_segments, k_segments: int [B, Q], [B, K] document ids: a query sees only keys of its own
        document (documents packed into one window never attend across); None = one document.
    """

    key_mask: jax.Array | None = None
    q_segments: jax.Array | None = None
    k_segments: jax.Array | None = None

    @property
    def empty(self) -> bool:
        return self.key_mask is None and self.q_segments is None

    def dense(self, q_slice=slice(None), k_slice=slice(None)):
        """bool [B, Q, K] (a broadcastable factor) for queries/keys `q_slice`/`k_slice`, or
        None when there is nothing per example."""
        out = None
        if self.q_segments is not None:
            out = self.q_segments[:, q_slice, None] == self.k_segments[:, None, k_slice]
        if self.key_mask is not None:
            keys = self.key_mask[:, None, k_slice]
            out = keys if out is None else out & keys
        return out

    def windows(self, w: Windows):
        """bool [B, nb, s, W] over the segment-batched windows `w` of the same positions."""
        out = None
        one = lambda x: x[:, :, None, None]  # noqa: E731  [B, T] -> [B, T, 1, 1] for Windows
        if self.q_segments is not None:
            q_BxNbxS = w.split(one(self.q_segments))[..., 0, 0]
            k_BxNbxW = w.window(one(self.k_segments))[..., 0, 0]
            out = q_BxNbxS[..., :, None] == k_BxNbxW[..., None, :]
        if self.key_mask is not None:
            keys = w.window(one(self.key_mask))[..., 0, 0][:, :, None, :]
            out = keys if out is None else out & keys
        return out
