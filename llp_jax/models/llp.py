"""LLP, the Long-LoRA-inspired Perceiver (ECP in the paper's v2).

The n positions are cut into segments of s tokens. Segment t's queries attend to the keys of
[segments t-k .. t-1 ; segment t]: the previous k segments fully visible (the paper: k = 1), causal
inside the current one; segment 0 sees only itself. Every layer keeps all n positions, so after L
layers position p in segment t depends on segments max(0, t - k*L)..t. Loss on all positions.
Attention pairs (k = 1): L * s * (2n - s), linear in n. Unlike S^2-Attn every head uses the same
window.

Two forms compute the same function:
  * parallel (`__call__`): all segments at once; the attention primitive's blocked path batches
    each query segment against its window of k + 1 key segments, never building an n x n mask;
  * streaming (`stream`): `jax.lax.scan` over segments, each step the overlapping window
    [previous k segments ; current segment] of every layer, with the carry holding each layer's
    keys/values of the previous k segments. Memory is independent of the sequence length, so
    sequences of any length run, and the carry continues across calls.

Code quirks (knobs): `llp_separate_first_out` (segment 0's own output projection `to_out_0`),
`kv_head_norm='unused'` (K/V LayerNorm parameters exist, output discarded), RoPE in layer 1 only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from llp_jax.models.attention import MaskSpec
from llp_jax.models.base import LanguageModel
from llp_jax.models.config import ConfigError

# Streaming carry: keys and values of the previous k segments for layer 1 ([B, k*s, H, D] each)
# and for layers 2..L (stacked, [L-1, B, k*s, H, D]), and the index of the next segment.
StreamState = dict


class LLP(LanguageModel):
    @property
    def mask(self) -> MaskSpec:
        return MaskSpec(causal=True, block=self.cfg.segment_len, blocks_back=self.cfg.prev_segments)

    def _stream_layer(self, first: bool, q_pos, k_pos):
        s = self.cfg.segment_len

        def fn(block, x, kv, r):
            y, (k_new, v_new) = block(
                x,
                self.mask,
                q_pos=q_pos,
                k_pos=k_pos,
                use_rope=self.rope_in(first),
                rng=r,
                kv_prefix=kv,
                first_out_len=s,
            )
            # Slide the window: drop the oldest segment, append this one.
            return y, (
                jnp.concatenate([kv[0], k_new.astype(kv[0].dtype)], axis=1)[:, s:],
                jnp.concatenate([kv[1], v_new.astype(kv[1].dtype)], axis=1)[:, s:],
            )

        return fn

    def hidden(self, x_BxTxD, rng):
        s = self.cfg.segment_len
        return self.run_self_attention(x_BxTxD, self.mask, rng, first_out_len=s)

    # ------------------------------------------------------------------ streaming form
    def init_stream(self, batch_size: int) -> StreamState:
        """An empty streaming state: no previous segments (their key positions are < 0)."""
        cfg = self.cfg
        shape = (batch_size, cfg.prev_segments * cfg.segment_len, cfg.num_heads, cfg.head_dim)
        zeros = jnp.zeros(shape, self.dtype)
        rest = cfg.num_layers - 1
        stacked = jnp.zeros((rest, *shape), self.dtype) if rest else None
        return {
            "first": (zeros, zeros),
            "rest": (stacked, stacked) if rest else None,
            "segment": jnp.zeros((), jnp.int32),
        }

    def stream_segment(self, state: StreamState, segment_BxS: jax.Array, rng=None):
        """Runs one segment through all layers; returns (logits [B, s, V], new state)."""
        cfg = self.cfg
        s, back = cfg.segment_len, cfg.prev_segments
        t = state["segment"]
        q_pos = t * s + jnp.arange(s, dtype=jnp.int32)
        k_pos = jnp.concatenate([(t - back) * s + jnp.arange(back * s, dtype=jnp.int32), q_pos])
        x = self.embed_tokens(segment_BxS)
        x, (kv_first, kv_rest) = self.run_layers(
            x,
            self._stream_layer(True, q_pos, k_pos),
            self._stream_layer(False, q_pos, k_pos),
            rng,
            layer_aux=(state["first"], state["rest"]),
        )
        new_state = {"first": kv_first, "rest": kv_rest, "segment": t + 1}
        return self.logits(x), new_state

    def stream(self, tokens_BxT: jax.Array, state: StreamState | None = None):
        """Streams T tokens (a multiple of s) segment by segment with `lax.scan`.

        Returns (logits [B, T, V], state); pass the state back to continue the same sequence.
        """
        B, T = tokens_BxT.shape
        s = self.cfg.segment_len
        if T % s:
            raise ConfigError(f"stream input length {T} must be a multiple of segment_len={s}")
        if state is None:
            state = self.init_stream(B)
        segments_NxBxS = tokens_BxT.reshape(B, T // s, s).transpose(1, 0, 2)

        def step(carry, seg):
            logits, carry = self.stream_segment(carry, seg)
            return carry, logits

        state, logits_NxBxSxV = jax.lax.scan(step, state, segments_NxBxS)
        return logits_NxBxSxV.transpose(1, 0, 2, 3).reshape(B, T, -1), state
