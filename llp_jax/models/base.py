"""What every zoo model shares: embedding, a first block, a scanned stack of the other blocks, the
final LayerNorm and an untied output head.

Layer 1 is a separate module because in most models it differs from the rest (PerceiverAR's
cross-attention, V3's compression, first-layer-only RoPE). Layers 2..L are created stacked (one
leading 'layers' axis) and run with an explicit `nnx.split` -> `jax.lax.scan` -> `nnx.merge`, so
compile time does not grow with depth, with `jax.checkpoint` under the configured remat policy.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llp_jax.models.block import Block
from llp_jax.models.config import ModelConfig
from llp_jax.models.layers import DTYPES, LayerNorm, logical_param, uniform_param

REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole layer in the backward pass
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}

# fn(block, x, aux_in, rng) -> (x, aux_out): aux_in is this layer's slice of `run_layers`'s
# `layer_aux` (e.g. its streaming cache), aux_out anything per layer (e.g. its new keys/values).
LayerFn = Callable[[Block, jax.Array, object, jax.Array | None], tuple[jax.Array, object]]


def stack_blocks(make: Callable[[nnx.Rngs], Block], count: int, rngs: nnx.Rngs) -> Block:
    """Creates `count` blocks with stacked parameters (leading logical axis 'layers')."""

    @nnx.split_rngs(splits=count)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def create(r: nnx.Rngs) -> Block:
        return make(r)

    return create(rngs)


def layer_rng(rng: jax.Array | None, index) -> jax.Array | None:
    return None if rng is None else jax.random.fold_in(rng, index)


class LanguageModel(nnx.Module):
    """Base class: subclasses implement `hidden(x_BxTxD, rng) -> h_BxPxD` at the loss positions."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        cfg = cfg.validate()
        self.cfg = cfg
        V, d = cfg.vocab_size, cfg.d_model
        self.embed = logical_param(
            jax.random.normal(rngs.params(), (V, d), jnp.float32), ("vocab", "embed")
        )
        self.first_block = self.make_block(rngs, first=True)
        rest = cfg.num_layers - 1
        self.blocks = (
            stack_blocks(lambda r: self.make_block(r, first=False), rest, rngs) if rest else None
        )
        self.final_norm = LayerNorm(d)
        self.head_w = uniform_param(rngs, (d, V), d, ("embed", "vocab"))
        self.head_b = uniform_param(rngs, (V,), d, ("vocab",))

    # ------------------------------------------------------------------ hooks for subclasses
    def make_block(self, rngs: nnx.Rngs, *, first: bool) -> Block:
        return Block(self.cfg, rngs=rngs)

    def hidden(self, x_BxTxD: jax.Array, rng: jax.Array | None) -> jax.Array:
        raise NotImplementedError

    def loss_offset(self, seq_len: int) -> int:
        """First input position whose output is scored (outputs cover positions offset..T-1)."""
        return seq_len - self.cfg.latent_len if self.cfg.loss_offset else 0

    # ------------------------------------------------------------------ shared pieces
    @property
    def dtype(self):
        return DTYPES[self.cfg.compute_dtype]

    def rope_in(self, first: bool) -> bool:
        return first or self.cfg.rope_layers == "all"

    def embed_tokens(self, tokens_BxT: jax.Array) -> jax.Array:
        return jnp.take(self.embed[...], tokens_BxT, axis=0).astype(self.dtype)

    def logits(self, h_BxPxD: jax.Array) -> jax.Array:
        h = self.final_norm(h_BxPxD)
        logits = h @ self.head_w[...].astype(h.dtype) + self.head_b[...].astype(h.dtype)
        return logits.astype(jnp.float32)

    def __call__(self, tokens_BxT: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
        """Logits [B, P, V] for the loss positions loss_offset(T)..T-1; rng enables dropout."""
        return self.logits(self.hidden(self.embed_tokens(tokens_BxT), rng))

    def run_self_attention(self, x_BxTxD: jax.Array, mask, rng, **block_kwargs) -> jax.Array:
        """Every layer: all T positions attend to each other under `mask` (one MaskSpec, or one
        per head group). The body of transformer, s2attn and enhanced_v1/v2."""
        pos = positions(0, x_BxTxD.shape[1])

        def layer(first: bool) -> LayerFn:
            def fn(block, x, _, r):
                return block(
                    x,
                    mask,
                    q_pos=pos,
                    k_pos=pos,
                    use_rope=self.rope_in(first),
                    rng=r,
                    **block_kwargs,
                )

            return fn

        return self.run_layers(x_BxTxD, layer(True), layer(False), rng)[0]

    def run_layers(self, x, first_fn: LayerFn, rest_fn: LayerFn, rng, layer_aux=(None, None)):
        """Applies first_fn to layer 1 and rest_fn to layers 2..L (scanned).

        Args:
          layer_aux: (aux of layer 1, aux of layers 2..L stacked on a leading axis), e.g. the
            LLP streaming caches; the second is scanned together with the stacked parameters.

        Returns:
          (x, (aux_out of layer 1, aux_out of layers 2..L stacked)).
        """
        x, aux_first = first_fn(self.first_block, x, layer_aux[0], layer_rng(rng, 0))
        if self.blocks is None:
            return x, (aux_first, None)
        graphdef, state = nnx.split(self.blocks)
        count = self.cfg.num_layers - 1

        def body(h, xs):
            layer_state, index, aux_in = xs
            block = nnx.merge(graphdef, layer_state)
            return rest_fn(block, h, aux_in, layer_rng(rng, index))

        if self.cfg.remat != "none":
            body = jax.checkpoint(body, policy=REMAT_POLICIES[self.cfg.remat])
        x, aux_rest = jax.lax.scan(body, x, (state, jnp.arange(1, count + 1), layer_aux[1]))
        return x, (aux_first, aux_rest)


def positions(start: int, length: int) -> np.ndarray:
    """Static positions start..start+length-1 (NumPy, so attention can pick its blocked path)."""
    return np.arange(start, start + length, dtype=np.int32)
