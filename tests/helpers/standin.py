"""A tiny stand-in model that follows the zoo's conventions (stacked layers with a 'layers'
axis, logical axis names), for the training and storage tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from llp_jax.training import train_step


class _Block(nnx.Module):
    def __init__(self, d: int, f: int, rngs: nnx.Rngs):
        # No `eager_sharding=False` on purpose: flax's default (eager sharding on) must not break
        # the sharded init.
        self.w_in = nnx.Param(
            jax.random.normal(rngs.params(), (d, f)) * d**-0.5, out_sharding=("embed", "mlp")
        )
        self.b_in = nnx.Param(jnp.zeros((f,)), out_sharding=("mlp",))
        self.w_out = nnx.Param(
            jax.random.normal(rngs.params(), (f, d)) * f**-0.5, out_sharding=("mlp", "embed")
        )
        self.scale = nnx.Param(jnp.ones((d,)), out_sharding=("norm",))


class StandInLM(nnx.Module):
    """Embedding, `num_layers` stacked residual MLP blocks (leading 'layers' axis), output head."""

    def __init__(
        self, vocab_size: int = 16, d: int = 8, f: int = 32, num_layers: int = 2, *, rngs: nnx.Rngs
    ):
        self.embed = nnx.Param(
            jax.random.normal(rngs.params(), (vocab_size, d)), out_sharding=("vocab", "embed")
        )

        @nnx.split_rngs(splits=num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def make_blocks(r: nnx.Rngs) -> _Block:
            return _Block(d, f, r)

        self.blocks = make_blocks(rngs)
        self.head_w = nnx.Param(
            jax.random.normal(rngs.params(), (d, vocab_size)) * d**-0.5,
            out_sharding=("embed", "vocab"),
        )
        self.head_b = nnx.Param(jnp.zeros((vocab_size,)), out_sharding=("vocab",))
        self.dropout = 0.1

    def __call__(self, tokens_BxT: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        x_BxTxD = jnp.take(self.embed[...], tokens_BxT, axis=0)
        blocks = nnx.state(self.blocks)
        w_in, b_in, w_out, scale = (blocks[k][...] for k in ("w_in", "b_in", "w_out", "scale"))

        def layer(x, params):
            wi, bi, wo, s = params
            return x + jnp.tanh(x * s @ wi + bi) @ wo, None

        x_BxTxD, _ = jax.lax.scan(layer, x_BxTxD, (w_in, b_in, w_out, scale))
        if rng is not None:
            keep = jax.random.bernoulli(rng, 1 - self.dropout, x_BxTxD.shape)
            x_BxTxD = jnp.where(keep, x_BxTxD / (1 - self.dropout), 0.0)
        return x_BxTxD @ self.head_w[...] + self.head_b[...]


def make_standin(vocab_size: int = 16, seed: int = 0, **kw) -> StandInLM:
    """Builds the stand-in with eager sharding off (no mesh needed)."""
    with nnx.use_eager_sharding(False):
        return StandInLM(vocab_size, rngs=nnx.Rngs(params=seed), **kw)


def lm_loss_fn(graphdef: nnx.GraphDef):
    """(params, batch, rng) -> (per-token mean cross-entropy, {'accuracy'}) for the stand-in."""

    def loss_fn(params, batch, rng):
        model = nnx.merge(graphdef, params)
        logits_BxTxV = model(batch["inputs"], rng)
        losses_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, batch["targets"])
        accuracy = (logits_BxTxV.argmax(-1) == batch["targets"]).mean()
        return losses_BxT.mean(), {"accuracy": accuracy}

    return loss_fn


def sharded_params(model_factory, mesh):
    """(graphdef, params) created straight into their shardings on `mesh`, by the trainer's own
    jitted init (`train_step.init_train_state`)."""
    graphdef, state, _ = train_step.init_train_state(model_factory, optax.identity(), mesh, 0)
    return graphdef, state["params"]
