"""The shared pre-LayerNorm block, `x = x + Attn(LN(x)); x = x + FF(LN(x))`, used by every model.

Models differ only in what they pass (the mask, which positions are queries, a key/value prefix,
an attention replacement) and, through a subclass chosen by `LanguageModel.make_block`, in how the
attention output joins the residual stream (`attention_output`: LLP's segment-0 projection,
enhanced_v3's sequence compression).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from flax import nnx

from llp_jax.models.attention import attend
from llp_jax.models.layers import AttentionProjections, FeedForward, LayerNorm, split_rng

if TYPE_CHECKING:
    from llp_jax.models.config import ModelConfig

# (q [B,Q,H,D], k [B,T,H,D], v [B,T,H,D], dropout rng or None) -> attention output [B,Q,H,D].
AttentionFn = Callable[[jax.Array, jax.Array, jax.Array, "jax.Array | None"], jax.Array]


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.norm1 = LayerNorm(cfg.d_model)
        self.init_attention(cfg, rngs)
        self.norm2 = LayerNorm(cfg.d_model)
        self.ff = FeedForward(cfg, rngs=rngs)

    def init_attention(self, cfg: ModelConfig, rngs: nnx.Rngs) -> None:
        """Creates the attention parameters (a subclass adds its own right after them)."""
        self.attn = AttentionProjections(cfg, rngs=rngs)

    def __call__(self, x_BxTxD, mask, *, q_pos, k_pos, use_rope: bool, rng=None,
                 num_queries: int | None = None, kv_prefix=None, example=None,
                 attention: AttentionFn | None = None):  # fmt: skip
        """Applies the block.

        Args:
          x_BxTxD: the layer input at positions k_pos[-T:].
          mask: what queries see (a `MaskSpec`, or one per head group).
          q_pos: positions of the queries (the last `num_queries` of x, or all of x).
          k_pos: positions of all keys: the kv_prefix's, then x's.
          use_rope: rotate queries and keys in this layer.
          rng: dropout key (None: deterministic).
          num_queries: only the last num_queries positions of x are queries (PerceiverAR layer 1).
          kv_prefix: cached (k, v) [B, P, H, D] placed before x's keys (streaming, decoding).
          example: the per-example mask over (queries, all keys) (`ExampleMask`: a key mask,
            document ids), or None.
          attention: replaces the prefix concatenation and `attend`: (q, k, v, rng) -> o (the
            sequence-parallel LLP fetches its left neighbour's keys/values there).

        Returns:
          (y, (k, v)): the layer output at the query positions (see `attention_output`) and the
          keys/values computed from x (to extend a cache).
        """
        rng_attn, rng_ff = split_rng(rng, 2)
        h = self.norm1(x_BxTxD)
        T = x_BxTxD.shape[1]
        hq = h if num_queries is None else h[:, T - num_queries :]
        new_k_pos = k_pos[len(k_pos) - T :] if kv_prefix is not None else k_pos
        q, k_new, v_new = self.attn.qkv(hq, h, q_pos, new_k_pos, use_rope)
        if attention is None:
            attention = functools.partial(self._attend, mask, q_pos, k_pos, kv_prefix, example)
        o_BxQxHxD = attention(q, k_new, v_new, rng_attn)
        y = self.attention_output(o_BxQxHxD, x_BxTxD, q_pos, example)
        y = y + self.ff(self.norm2(y), rng_ff)
        return y, (k_new, v_new)

    def attention_output(self, o_BxQxHxD, x_BxTxD, q_pos, example=None):
        """The residual stream after attention: the queries' inputs + the projected output."""
        return x_BxTxD[:, x_BxTxD.shape[1] - o_BxQxHxD.shape[1] :] + self.attn.out(o_BxQxHxD)

    def _attend(self, mask, q_pos, k_pos, kv_prefix, example, q, k, v, rng):
        """`attend` over [kv_prefix ; the new keys/values]."""
        if kv_prefix is not None:
            k = jnp.concatenate([kv_prefix[0].astype(k.dtype), k], axis=1)
            v = jnp.concatenate([kv_prefix[1].astype(v.dtype), v], axis=1)
        return attend(
            q, k, v, mask, q_pos=q_pos, k_pos=k_pos, impl=self.cfg.attention_impl,
            dropout_rate=self.cfg.dropout, rng=rng, example=example,
        )  # fmt: skip
