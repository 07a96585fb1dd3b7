"""Perceiver AR (Hawthorne et al. 2022): l latents cross-attend to the whole window once.

Layer 1: the last l positions are queries over all n keys, key position <= query position (so
history is fully visible and the latent block is causal). Layers 2..L: causal self-attention among
the l latents; the history is never seen again. Loss on the last l positions.
Attention pairs: l*n + (L-1)*l^2. Note `jax.nn.dot_product_attention(is_causal=True)` would align
the triangle top-left, which is wrong with fewer queries than keys: our masks are position-based.

Cross-attend dropout (`cross_attend_dropout`, the official Perceiver AR's regulariser, off in the
authors' code): at each training step every history position is dropped from layer 1's keys with
this probability, independently per example. Dropping keys never lets a query see more, so the
model stays causal; evaluation and decoding (no dropout key, or `for_inference()`) see them all.
"""

from __future__ import annotations

import jax
import numpy as np

from llp_jax.models.base import positions
from llp_jax.models.latent import LatentModel
from llp_jax.models.masks import ExampleMask, MaskSpec


class PerceiverAR(LatentModel):
    name = "perceiver_ar"
    cache = "latent"
    has_cross_attention = True

    def attention_mask(self, seq_len: int) -> MaskSpec:
        return MaskSpec(causal=True)

    def hidden(self, x_BxTxD, rng, segments=None):
        return self.run_with_kv(x_BxTxD, rng, segments)[0]

    def run_with_kv(self, x_BxTxD, rng, segments=None):
        """(latents after the last layer, per-layer (keys, values)): the cached decoder's refill."""
        T, l = x_BxTxD.shape[1], self.cfg.latent_len
        all_pos, latent_pos = positions(0, T), positions(T - l, l)
        mask = self.attention_mask(T)
        latent_seg = None if segments is None else segments[:, T - l :]

        def cross(block, x, _, r):
            return block(
                x,
                mask,
                q_pos=latent_pos,
                k_pos=all_pos,
                num_queries=l,
                use_rope=self.rope_in(True),
                rng=r,
                example=ExampleMask(self.dropped_history(r, x.shape[0], T), latent_seg, segments),
            )

        latents_only = ExampleMask(None, latent_seg, latent_seg)

        def self_attn(block, x, _, r):
            return block(x, mask, q_pos=latent_pos, k_pos=latent_pos,
                         use_rope=self.rope_in(False), rng=r, example=latents_only)  # fmt: skip

        return self.run_layers(x_BxTxD, cross, self_attn, rng)

    def dropped_history(self, rng, batch: int, seq_len: int):
        """bool [B, T] keys layer 1 keeps under cross-attend dropout (None: all of them)."""
        rate = self.cfg.cross_attend_dropout
        if rng is None or rate == 0.0 or self.inference:
            return None
        history_T = np.arange(seq_len) < seq_len - self.cfg.latent_len
        keep = jax.random.bernoulli(jax.random.fold_in(rng, 1), 1.0 - rate, (batch, seq_len))
        return keep | ~history_T[None, :]  # latents are always kept
