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
import numpy as np
from flax import nnx

from llp_jax.errors import ConfigError, InputError
from llp_jax.models.base import LanguageModel, need
from llp_jax.models.block import Block
from llp_jax.models.inputs import check_tokens
from llp_jax.models.layers import project_heads, uniform_param
from llp_jax.models.masks import ExampleMask, MaskSpec

# Streaming carry: keys and values of the previous k segments for layer 1 ([B, k*s, H, D] each)
# and for layers 2..L (stacked, [L-1, B, k*s, H, D]), the index of the next segment, the first
# position of the stream (earlier cache slots are empty), and, for document masks, the documents
# of the cached positions [B, k*s] and the document of the next token [B].
StreamState = dict


class SegmentZeroBlock(Block):
    """The authors' LLP layer: queries of segment 0 (positions < s) leave attention through their
    own output projection (`to_out_0` in the code), all others through the shared one."""

    def init_attention(self, cfg, rngs: nnx.Rngs) -> None:
        super().init_attention(cfg, rngs)
        d, H, Dh = cfg.d_model, cfg.num_heads, cfg.head_dim
        self.wo0 = uniform_param(rngs, (H, Dh, d), d, ("heads", "kv", "embed"))
        self.bo0 = uniform_param(rngs, (d,), d, ("embed",))

    def attention_output(self, o_BxQxHxD, x_BxTxD, q_pos, example=None):
        # Query positions increase along the rows (every caller's do), so segment 0 is a prefix.
        s = self.cfg.segment_len
        residual = x_BxTxD[:, x_BxTxD.shape[1] - o_BxQxHxD.shape[1] :]
        if isinstance(q_pos, np.ndarray):
            n0 = int(np.sum(q_pos < s))  # static: project each part once
            first = project_heads(o_BxQxHxD[:, :n0], self.wo0, self.bo0)
            rest = self.attn.out(o_BxQxHxD[:, n0:])
            return residual + jnp.concatenate([first, rest], axis=1)
        # Traced positions (a sequence-parallel shard, a decoding step): only the first s rows
        # can be segment 0, so only those are projected twice.
        out = self.attn.out(o_BxQxHxD)
        f = min(s, o_BxQxHxD.shape[1])
        is_first = (jnp.asarray(q_pos)[:f] < s)[None, :, None]
        head = jnp.where(is_first, project_heads(o_BxQxHxD[:, :f], self.wo0, self.bo0), out[:, :f])
        return residual + out.at[:, :f].set(head)


class LLP(LanguageModel):
    name = "llp"
    cache = "ring"
    can_stream = True
    faithful_knobs = {"kv_head_norm": "unused", "llp_separate_first_out": True}

    @classmethod
    def check_config(cls, cfg) -> None:
        need(
            cfg.segment_len >= 1 and cfg.seq_len % cfg.segment_len == 0,
            f"segment_len={cfg.segment_len} must divide seq_len={cfg.seq_len}",
        )
        need(cfg.prev_segments >= 1, f"prev_segments={cfg.prev_segments} must be >= 1")

    @classmethod
    def structural_sizes(cls, seq_len, sizes):
        s = min(sizes.segment_len, seq_len) if sizes.segment_len else seq_len // sizes.segments
        return {"segment_len": max(s, 1)}

    @classmethod
    def ring_slots(cls, cfg) -> int:
        return (cfg.prev_segments + 1) * cfg.segment_len  # the previous k segments + the current

    def make_block(self, rngs: nnx.Rngs, *, first: bool) -> Block:
        block = SegmentZeroBlock if self.cfg.llp_separate_first_out else Block
        return block(self.cfg, rngs=rngs)

    def attention_mask(self, seq_len: int) -> MaskSpec:
        return MaskSpec(causal=True, block=self.cfg.segment_len, blocks_back=self.cfg.prev_segments)

    def hidden(self, x_BxTxD, rng, segments=None):
        return self.run_self_attention(x_BxTxD, rng, segments)

    # ------------------------------------------------------------------ streaming form
    def _stream_layer(self, first: bool, q_pos, k_pos, example):
        s = self.cfg.segment_len
        mask = self.attention_mask(s)

        def fn(block, x, kv, r):
            y, (k_new, v_new) = block(
                x, mask, q_pos=q_pos, k_pos=k_pos, use_rope=self.rope_in(first), rng=r,
                kv_prefix=kv, example=example,
            )  # fmt: skip
            # Slide the window: drop the oldest segment, append this one.
            return y, (
                jnp.concatenate([kv[0], k_new.astype(kv[0].dtype)], axis=1)[:, s:],
                jnp.concatenate([kv[1], v_new.astype(kv[1].dtype)], axis=1)[:, s:],
            )

        return fn

    def init_stream(self, batch_size: int, start: int = 0) -> StreamState:
        """An empty streaming state for a stream whose first token sits at absolute position
        `start` (a multiple of segment_len): no previous segments, whatever `start` is."""
        cfg = self.cfg
        if start % cfg.segment_len:
            raise ConfigError(f"stream start {start} must be a multiple of segment_len")
        shape = (batch_size, cfg.prev_segments * cfg.segment_len, cfg.num_heads, cfg.head_dim)
        zeros = jnp.zeros(shape, self.dtype)
        rest = cfg.num_layers - 1
        stacked = jnp.zeros((rest, *shape), self.dtype) if rest else None
        return {
            "first": (zeros, zeros),
            "rest": (stacked, stacked) if rest else None,
            "segment": jnp.asarray(start // cfg.segment_len, jnp.int32),
            "start": jnp.asarray(start, jnp.int32),
            "key_docs": jnp.zeros((batch_size, cfg.prev_segments * cfg.segment_len), jnp.int32),
            "doc": jnp.zeros((batch_size,), jnp.int32),
        }

    def stream_segment(self, state: StreamState, segment_BxS: jax.Array, rng=None):
        """Runs one segment through all layers; returns (logits [B, s, V], new state)."""
        cfg = self.cfg
        s, back = cfg.segment_len, cfg.prev_segments
        t = state["segment"]
        q_pos = t * s + jnp.arange(s, dtype=jnp.int32)
        k_pos = jnp.concatenate([(t - back) * s + jnp.arange(back * s, dtype=jnp.int32), q_pos])
        k_pos = jnp.where(k_pos >= state["start"], k_pos, -1)  # before the stream: empty slots
        example, docs = None, {}
        if cfg.document_mask:
            is_eod = (segment_BxS == cfg.eod_id).astype(jnp.int32)
            seg_BxS = state["doc"][:, None] + jnp.cumsum(is_eod, axis=1) - is_eod
            keys_BxW = jnp.concatenate([state["key_docs"], seg_BxS], axis=1)
            example = ExampleMask(None, seg_BxS, keys_BxW)
            docs = {"key_docs": keys_BxW[:, s:], "doc": state["doc"] + is_eod.sum(axis=1)}
        x = self.embed_tokens(segment_BxS)
        x, (kv_first, kv_rest) = self.run_layers(
            x,
            self._stream_layer(True, q_pos, k_pos, example),
            self._stream_layer(False, q_pos, k_pos, example),
            rng,
            layer_aux=(state["first"], state["rest"]),
        )
        new_state = {**state, **docs, "first": kv_first, "rest": kv_rest, "segment": t + 1}
        return self.logits(x), new_state

    def stream(self, tokens_BxT: jax.Array, state: StreamState | None = None):
        """Streams T tokens (a multiple of s) segment by segment with `lax.scan`.

        Returns (logits [B, T, V], state); pass the state back to continue the same sequence.
        """
        check_tokens(tokens_BxT, self.cfg.vocab_size)
        B, T = tokens_BxT.shape
        s = self.cfg.segment_len
        if T % s:
            raise ConfigError(f"stream input length {T} must be a multiple of segment_len={s}")
        fresh = jax.eval_shape(lambda: self.init_stream(B))
        if state is None:
            state = self.init_stream(B)
        elif jax.tree.map(jnp.shape, state) != jax.tree.map(lambda x: x.shape, fresh):
            raise InputError(
                f"the stream state does not fit this model and a batch of {B}: pass back the "
                "state this model's stream returned for the same batch (or none, to start)"
            )
        segments_NxBxS = tokens_BxT.reshape(B, T // s, s).transpose(1, 0, 2)

        def step(carry, seg):
            logits, carry = self.stream_segment(carry, seg)
            return carry, logits

        state, logits_NxBxSxV = jax.lax.scan(step, state, segments_NxBxS)
        return logits_NxBxSxV.transpose(1, 0, 2, 3).reshape(B, T, -1), state
