"""The shared pre-LayerNorm block, `x = x + Attn(LN(x)); x = x + FF(LN(x))`, used by every model.

Models differ only in what they pass: the mask, which positions are queries (PerceiverAR-style
latents are the last `num_queries` positions), a key/value prefix (the LLP streaming cache), and,
for enhanced_v3's first layer, the sequence compression of the history.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from llp_jax.models.attention import MaskSpec, attend
from llp_jax.models.config import ModelConfig
from llp_jax.models.layers import (
    AttentionProjections,
    FeedForward,
    LayerNorm,
    split_rng,
    uniform_param,
)

# (q [B,Q,H,D], k [B,T,H,D], v [B,T,H,D], dropout rng or None) -> attention output [B,Q,H,D].
AttentionFn = Callable[[jax.Array, jax.Array, jax.Array, "jax.Array | None"], jax.Array]


class Block(nnx.Module):
    """One transformer layer; `compress=(m, c)` adds V3's Linear(m -> c) along the sequence."""

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        rngs: nnx.Rngs,
        compress: tuple[int, int] | None = None,
    ):
        self.cfg = cfg
        self.norm1 = LayerNorm(cfg.d_model)
        self.attn = AttentionProjections(
            cfg, rngs=rngs, separate_first_out=cfg.name == "llp" and cfg.llp_separate_first_out
        )
        self.norm2 = LayerNorm(cfg.d_model)
        self.ff = FeedForward(cfg, rngs=rngs)
        if compress is not None:
            m, c = compress
            self.compress_w = uniform_param(rngs, (m, c), m, ("seq", None))
            self.compress_b = uniform_param(rngs, (c,), m, (None,))

    def compress_sequence(self, x_BxMxD: jax.Array) -> jax.Array:
        """V3's Linear(m -> c) applied along the sequence axis, shared by all channels."""
        dt = x_BxMxD.dtype
        y = jnp.einsum("bmd,mc->bcd", x_BxMxD, self.compress_w[...].astype(dt))
        return y + self.compress_b[...].astype(dt)[None, :, None]

    def __call__(
        self,
        x_BxTxD: jax.Array,
        mask: MaskSpec | tuple[MaskSpec, ...],
        *,
        q_pos,
        k_pos,
        use_rope: bool,
        rng: jax.Array | None = None,
        num_queries: int | None = None,
        kv_prefix: tuple[jax.Array, jax.Array] | None = None,
        compress_history: int = 0,
        first_out_len: int = 0,
        attention: AttentionFn | None = None,
    ):
        """Applies the block.

        Args:
          x_BxTxD: the layer input at positions k_pos[-T:].
          mask: what queries see (see attention.MaskSpec).
          q_pos: positions of the queries (the last `num_queries` of x, or all of x).
          k_pos: positions of all keys: the kv_prefix's, then x's.
          use_rope: rotate queries and keys in this layer.
          rng: dropout key (None: deterministic).
          num_queries: only the last num_queries positions of x are queries (PerceiverAR layer 1).
          kv_prefix: cached (k, v) [B, P, H, D] placed before x's keys (LLP streaming/decoding).
          compress_history: m > 0 compresses the first m outputs to c (V3's first layer).
          first_out_len: queries at positions < this use the segment-0 output projection.
          attention: replaces the prefix concatenation and `attend`: (q, k, v, rng) -> o. The
            sequence-parallel LLP fetches its left neighbour's keys/values there.

        Returns:
          (y_BxQxD, (k, v)) with y the layer output at the query positions (compressed for V3)
          and k, v the new keys/values computed from x (to extend a cache).
        """
        rng_attn, rng_ff = split_rng(rng, 2)
        h = self.norm1(x_BxTxD)
        T = x_BxTxD.shape[1]
        hq = h if num_queries is None else h[:, T - num_queries :]
        new_k_pos = k_pos[len(k_pos) - T :] if kv_prefix is not None else k_pos
        q, k_new, v_new = self.attn.qkv(hq, h, q_pos, new_k_pos, use_rope)
        if attention is None:
            attention = functools.partial(self._attend, mask, q_pos, k_pos, kv_prefix)
        o_BxQxHxD = attention(q, k_new, v_new, rng_attn)
        residual = x_BxTxD[:, x_BxTxD.shape[1] - q.shape[1] :]
        if compress_history:
            o_BxQxHxD, residual = self._compress(o_BxQxHxD, x_BxTxD, compress_history)
        y = residual + self.attn.out(o_BxQxHxD, q_pos, first_out_len)
        y = y + self.ff(self.norm2(y), rng_ff)
        return y, (k_new, v_new)

    def _attend(self, mask, q_pos, k_pos, kv_prefix, q, k, v, rng):
        """`attend` over [kv_prefix ; the new keys/values]."""
        if kv_prefix is not None:
            k = jnp.concatenate([kv_prefix[0].astype(k.dtype), k], axis=1)
            v = jnp.concatenate([kv_prefix[1].astype(v.dtype), v], axis=1)
        return attend(
            q, k, v, mask, q_pos=q_pos, k_pos=k_pos, impl=self.cfg.attention_impl,
            dropout_rate=self.cfg.dropout, rng=rng,
        )  # fmt: skip

    def _compress(self, o_BxNxHxD, x_BxNxD, m):
        """Compresses the m history outputs (heads merged) to c; returns (o, residual)."""
        B, N, H, Dh = o_BxNxHxD.shape
        o = o_BxNxHxD.reshape(B, N, H * Dh)
        o = jnp.concatenate([self.compress_sequence(o[:, :m]), o[:, m:]], axis=1)
        c_plus_l = o.shape[1]
        if self.cfg.v3_residual == "code":
            residual = x_BxNxD[:, :c_plus_l]  # the authors' misaligned residual
        else:
            residual = jnp.concatenate(
                [self.compress_sequence(x_BxNxD[:, :m]), x_BxNxD[:, m:]], axis=1
            )
        return o.reshape(B, c_plus_l, H, Dh), residual
