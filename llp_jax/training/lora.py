"""LoRA (Hu et al., 2021) for fine-tuning, as LongLoRA trains: `train.lora_rank = r > 0`.

Each trainable attention projection W (wq, wk, wv, wo: the kernels with both an 'embed' and a
'heads' axis) learns a low-rank update W = W0 + (alpha / r) * A @ B instead of training in full:
A [fan_in, r] starts uniform in +-1/sqrt(fan_in) (PEFT's Kaiming default), B [r, fan_out] at
zero, so step 0 is the source model exactly. The embeddings and norms LongLoRA also trains (and
anything else `train.trainable` names) train in full beside them.

Why an optax transformation and not adapter modules: the model, its checkpoints and every reader
of them (evaluate, sample, convert, export) stay what they are. The parameters always hold the
merged W; A and B live in the optimizer state (so they are checkpointed, resumed bitwise and
restored into their shardings with it). The backward already gives dL/dW = G; LoRA's gradients
are the chain rule through W's parametrisation, dL/dA = s G B^T and dL/dB = s A^T G; the inner
optimizer (clipping and AdamW, over the factors and the fully trained parameters together)
updates A and B, and W moves by exactly s (A' B' - A B) = s (A dB + dA B'). What is saved is the
optimizer memory (Adam moments of r (fan_in + fan_out) numbers per matrix instead of
fan_in * fan_out), as in LoRA; these matrices' backward matmuls are those of full training (the
frozen layers' weight gradients are dropped: train_step's `trained`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from llp_jax.errors import ConfigError
from llp_jax.models.inputs import seed_key
from llp_jax.training.mesh import variable_logical_axes

LORA = "lora"  # the label of a parameter trained through its low-rank factors


class LoraState(NamedTuple):
    factors: Any  # per LoRA parameter {'a': [*layers, fan_in, r], 'b': [*layers, r, fan_out]}
    inner: Any  # the inner optimizer's state over the factors and the fully trained parameters


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def matrix_split(variable: nnx.Variable) -> tuple[int, int] | None:
    """(leading stacked-layer axes, axis where the output begins) of an attention projection,
    or None for any other parameter: [layers?, embed | heads, kv] (wq, wk, wv) reads embed in,
    [layers?, heads, kv | embed] (wo) writes embed out."""
    axes = variable_logical_axes(variable) or ()
    if "embed" not in axes or "heads" not in axes:
        return None
    batch = 0
    while batch < len(axes) and axes[batch] == "layers":
        batch += 1
    if axes[batch] == "embed":
        return batch, batch + 1
    if axes[-1] == "embed":
        return batch, len(axes) - 1
    return None


def _shapes(shape, split) -> tuple[tuple[int, ...], int, int]:
    batch, out_at = split
    return tuple(shape[:batch]), math.prod(shape[batch:out_at]), math.prod(shape[out_at:])


def mark(params: nnx.State, labels, rank: int):
    """`labels` ('train' / 'frozen' per Variable) with the trainable attention projections
    relabelled LORA. A rank no projection can take, or no trainable projection at all, is a
    one-line error (LoRA would otherwise train nothing of attention without a word)."""

    def relabel(label, variable):
        split = matrix_split(variable)
        if label != "train" or split is None:
            return label
        _, fan_in, fan_out = _shapes(variable.get_value().shape, split)
        if rank > min(fan_in, fan_out):
            raise ConfigError(
                f"train.lora_rank={rank} is above the attention projections' smaller side "
                f"({min(fan_in, fan_out)}): a rank-{rank} update is no longer low-rank; use "
                f"a rank up to {min(fan_in, fan_out)} (LongLoRA: 8), or 0 to train them in full"
            )
        return LORA

    if labels is None:
        labels = jax.tree.map(lambda _: "train", params, is_leaf=_is_variable)
    labels = jax.tree.map(relabel, labels, params, is_leaf=_is_variable)
    if LORA not in jax.tree.leaves(labels):
        raise ConfigError(
            f"train.lora_rank={rank} but train.trainable leaves no attention projection "
            "(wq, wk, wv, wo) to train: use train.trainable='longlora' (or a pattern matching "
            "'attn'), or train.lora_rank=0"
        )
    return labels


def lora(inner: optax.GradientTransformation, labels, *, rank: int, alpha: float, seed: int):
    """`inner` over the LORA parameters' factors and the 'train' ones; 'frozen' ones stay put.

    Args:
      inner: the optimizer (e.g. clipping + AdamW); it sees {'a', 'b'} in place of each LORA
        parameter, the 'train' parameters as they are, and nothing of the frozen ones.
      labels: a prefix tree of the params ('train' / 'frozen' / LORA), from `mark`.
      rank, alpha: the update's rank and scale alpha / rank.
      seed: draws the A factors (B starts at zero).
    """
    scale = float(alpha) / rank

    def init(params):
        key = seed_key(seed)
        count = itertools.count()  # one key per LoRA parameter, in tree order

        def factors(label, variable):
            if label != LORA:
                return optax.MaskedNode()
            batch, fan_in, fan_out = _shapes(variable.get_value().shape, matrix_split(variable))
            k = jax.random.fold_in(key, next(count))
            bound = 1.0 / math.sqrt(fan_in)
            a = jax.random.uniform(k, (*batch, fan_in, rank), jnp.float32, -bound, bound)
            return {"a": a, "b": jnp.zeros((*batch, rank, fan_out), jnp.float32)}

        fac = jax.tree.map(factors, labels, params, is_leaf=_is_variable)
        return LoraState(fac, inner.init(_combined(labels, params, fac)))

    def update(updates, state, params=None):
        def grad(label, g, f):
            if label != LORA:
                return g
            g_mat = g.get_value().reshape(*f["a"].shape[:-1], f["b"].shape[-1]).astype(jnp.float32)
            return {
                "a": scale * jnp.einsum("...io,...ro->...ir", g_mat, f["b"]),
                "b": scale * jnp.einsum("...ir,...io->...ro", f["a"], g_mat),
            }

        grads = jax.tree.map(grad, labels, updates, state.factors, is_leaf=_is_variable)
        grads = _combined(labels, grads, state.factors, keep_lora=True)
        inner_params = None if params is None else _combined(labels, params, state.factors)
        steps, inner_state = inner.update(grads, state.inner, inner_params)

        def apply(label, g, f, step):
            if label == "frozen":
                return jax.tree.map(jnp.zeros_like, g)
            if label != LORA:
                return step
            b_new = f["b"] + step["b"]
            delta = scale * (f["a"] @ step["b"] + step["a"] @ b_new)
            return g.replace(delta.reshape(g.get_value().shape).astype(g.get_value().dtype))

        out = jax.tree.map(apply, labels, updates, state.factors, steps, is_leaf=_is_variable)

        def advance(label, f, step):
            if label != LORA:
                return f
            return {"a": f["a"] + step["a"], "b": f["b"] + step["b"]}

        factors = jax.tree.map(advance, labels, state.factors, steps, is_leaf=_is_variable)
        return out, LoraState(factors, inner_state)

    return optax.GradientTransformation(init, update)


def _combined(labels, tree, factors, *, keep_lora: bool = False):
    """What the inner optimizer sees: 'train' leaves of `tree`, a LORA parameter's factors (or,
    with keep_lora, `tree`'s own entry there: its factor gradients), nothing of frozen ones."""

    def pick(label, leaf, f):
        if label == "frozen":
            return optax.MaskedNode()
        if label == LORA:
            return leaf if keep_lora else f
        return leaf

    return jax.tree.map(pick, labels, tree, factors, is_leaf=_is_variable)


def parameter_count(params: nnx.State, labels, rank: int) -> int:
    """How many numbers train: the 'train' parameters' sizes plus r (fan_in + fan_out) per
    layer of each LORA one."""

    def count(label, variable):
        shape = variable.get_value().shape
        if label == LORA:
            batch, fan_in, fan_out = _shapes(shape, matrix_split(variable))
            return math.prod(batch) * rank * (fan_in + fan_out)
        return math.prod(shape) if label == "train" else 0

    return sum(jax.tree.leaves(jax.tree.map(count, labels, params, is_leaf=_is_variable)))
