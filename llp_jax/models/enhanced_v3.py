"""Enhanced PerceiverAR V3, "compressed history".

Layer 1 runs V1's attention on all n positions, then compresses the m history outputs to c
positions with a learned Linear(m -> c) along the sequence axis (shared by all channels, after the
head merge, before the output projection). Layers 2..L run V1's attention on the c + l positions.
Loss on the last l positions.

Clean behaviour: the layer-1 residual is aligned (latents add their own embeddings; the compressed
history adds the same compression of the input history). The compressed positions get evenly
spread history positions floor(j * m / c) for RoPE and masks, so they all precede the latents.
Code-faithful knobs: `v3_residual='code'` adds x[:, :c+l]; `v3_compress_every_layer` creates the
(unused) compression matrix in every layer, as the parameter count of the code includes it.
Not reproduced: the code's missing dropout on the history attention.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from llp_jax.models.base import positions
from llp_jax.models.block import Block
from llp_jax.models.config import ConfigError
from llp_jax.models.enhanced_v1 import EnhancedV1


class EnhancedV3(EnhancedV1):
    def make_block(self, rngs: nnx.Rngs, *, first: bool) -> Block:
        cfg = self.cfg
        wants = first or cfg.v3_compress_every_layer
        return Block(cfg, rngs=rngs, compress=(cfg.history_len, cfg.compressed) if wants else None)

    def hidden(self, x_BxTxD, rng):
        cfg = self.cfg
        T, m, c = x_BxTxD.shape[1], cfg.history_len, cfg.compressed
        if T != cfg.seq_len:
            raise ConfigError(
                f"enhanced_v3 input length {T} must equal model.seq_len={cfg.seq_len} "
                "(its history compression is a Linear over exactly m positions)"
            )
        mask = self.history_mask(m)
        pos = positions(0, T)
        short_pos = np.concatenate([(np.arange(c) * m) // c, np.arange(m, T)]).astype(np.int32)

        def first_fn(block, x, _, r):
            return block(
                x,
                mask,
                q_pos=pos,
                k_pos=pos,
                use_rope=self.rope_in(True),
                rng=r,
                compress_history=m,
            )

        def rest_fn(block, x, _, r):
            return block(
                x, mask, q_pos=short_pos, k_pos=short_pos, use_rope=self.rope_in(False), rng=r
            )

        x, _ = self.run_layers(x_BxTxD, first_fn, rest_fn, rng)
        return x[:, c:]
