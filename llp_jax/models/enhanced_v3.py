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

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llp_jax.errors import ConfigError
from llp_jax.models.base import need, positions
from llp_jax.models.block import Block
from llp_jax.models.enhanced_v1 import EnhancedV1
from llp_jax.models.layers import uniform_param
from llp_jax.models.masks import ExampleMask


def compressed_positions(m: int, c: int) -> np.ndarray:
    """The history position each of the c compressed positions stands at: floor(j * m / c)."""
    return ((np.arange(c) * m) // c).astype(np.int32)


class CompressingBlock(Block):
    """A block with V3's Linear(m -> c) along the sequence; `active` = it compresses (layer 1),
    else the matrix only exists (the code's dead copies in layers 2..L)."""

    def __init__(self, cfg, *, rngs: nnx.Rngs, active: bool):
        super().__init__(cfg, rngs=rngs)
        m, c = cfg.history_len, cfg.compressed
        self.compress_w = uniform_param(rngs, (m, c), m, ("seq", None))
        self.compress_b = uniform_param(rngs, (c,), m, (None,))
        self.active = active

    def compress_sequence(self, x_BxMxD: jax.Array, same_doc_BxMxC=None) -> jax.Array:
        """Linear(m -> c) along the sequence axis, shared by all channels; with document masks,
        compressed position j combines only history positions of its own document."""
        dt = x_BxMxD.dtype
        w_MxC = self.compress_w[...].astype(dt)
        if same_doc_BxMxC is None:
            y = jnp.einsum("bmd,mc->bcd", x_BxMxD, w_MxC)
        else:
            y = jnp.einsum("bmd,mc,bmc->bcd", x_BxMxD, w_MxC, same_doc_BxMxC.astype(dt))
        return y + self.compress_b[...].astype(dt)[None, :, None]

    def attention_output(self, o_BxNxHxD, x_BxNxD, q_pos, example=None):
        if not self.active:
            return super().attention_output(o_BxNxHxD, x_BxNxD, q_pos, example)
        m = self.cfg.history_len
        B, N, H, Dh = o_BxNxHxD.shape
        same_doc = None
        if example is not None and example.q_segments is not None:
            seg_BxN = example.q_segments
            compressed_at = compressed_positions(m, self.cfg.compressed)
            same_doc = seg_BxN[:, :m, None] == seg_BxN[:, compressed_at][:, None, :]
        o = o_BxNxHxD.reshape(B, N, H * Dh)
        o = jnp.concatenate([self.compress_sequence(o[:, :m], same_doc), o[:, m:]], axis=1)
        c_plus_l = o.shape[1]
        if self.cfg.v3_residual == "code":
            residual = x_BxNxD[:, :c_plus_l]  # the authors' misaligned residual
        else:
            residual = jnp.concatenate(
                [self.compress_sequence(x_BxNxD[:, :m], same_doc), x_BxNxD[:, m:]], axis=1
            )
        return residual + self.attn.out(o.reshape(B, c_plus_l, H, Dh))


class EnhancedV3(EnhancedV1):
    name = "enhanced_v3"
    fixed_window = True  # the compression is a Linear over exactly m = n - l positions
    faithful_knobs = {"v3_residual": "code", "v3_compress_every_layer": True}

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        cls.check_history(cfg)
        need(
            not (cfg.document_mask and cfg.v3_residual == "code"),
            "document_mask needs v3_residual='aligned' (the code's residual adds position j's "
            "input to compressed position j, mixing documents)",
        )
        need(
            1 <= cfg.compressed < cfg.history_len,
            f"compressed_len={cfg.compressed} must be in [1, history length "
            f"seq_len - latent_len = {cfg.history_len})",
        )

    def make_block(self, rngs: nnx.Rngs, *, first: bool) -> Block:
        if first or self.cfg.v3_compress_every_layer:
            return CompressingBlock(self.cfg, rngs=rngs, active=first)
        return Block(self.cfg, rngs=rngs)

    def hidden(self, x_BxTxD, rng, segments=None):
        cfg = self.cfg
        T, m, c = x_BxTxD.shape[1], cfg.history_len, cfg.compressed
        if T != cfg.seq_len:
            raise ConfigError(
                f"enhanced_v3 input length {T} must equal model.seq_len={cfg.seq_len} "
                "(its history compression is a Linear over exactly m positions)"
            )
        mask = self.attention_mask(T)
        pos = positions(0, T)
        short_pos = np.concatenate([compressed_positions(m, c), np.arange(m, T)]).astype(np.int32)
        full = short = None
        if segments is not None:  # the compressed positions belong to their positions' documents
            full = ExampleMask(None, segments, segments)
            short_seg = segments[:, short_pos]
            short = ExampleMask(None, short_seg, short_seg)

        def first_fn(block, x, _, r):
            return block(x, mask, q_pos=pos, k_pos=pos, use_rope=self.rope_in(True), rng=r,
                         example=full)  # fmt: skip

        def rest_fn(block, x, _, r):
            return block(x, mask, q_pos=short_pos, k_pos=short_pos,
                         use_rope=self.rope_in(False), rng=r, example=short)  # fmt: skip

        x, _ = self.run_layers(x_BxTxD, first_fn, rest_fn, rng)
        return x[:, c:]
