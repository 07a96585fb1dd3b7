"""Training hyper-parameters, LR schedules, AdamW with a decay mask, gradient accumulation."""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from llp_jax.training.mesh import variable_logical_axes

SCHEDULES = ("cosine", "step_halving", "constant")


def default_train_config() -> ml_collections.ConfigDict:
    """The training hyper-parameters every experiment starts from (override per config file).

    `schedule`: 'cosine' = linear warm-up to `learning_rate` over `warmup_steps`, then cosine decay
    to `min_lr_ratio * learning_rate` at `num_steps`; 'step_halving' = the authors' recipe, constant
    `learning_rate` halved every `halve_every` steps, no warm-up; 'constant'.
    Compute dtype and rematerialisation are model fields (`config.model.compute_dtype`,
    `config.model.remat`): parameters and optimizer moments always stay float32, and the model
    casts them to its compute dtype inside the differentiated function.
    """
    return ml_collections.ConfigDict(
        {
            "batch_size": 32,
            "num_steps": 10_000,
            "learning_rate": 3e-4,
            "schedule": "cosine",
            "warmup_steps": 500,
            "halve_every": 50_000,
            "min_lr_ratio": 0.1,
            "b1": 0.9,
            "b2": 0.95,  # the authors' betas
            "eps": 1e-8,
            "weight_decay": 0.1,
            "clip_norm": 1.0,  # <= 0 disables clipping
            "grad_accum_steps": 1,
            "eval_every": 500,
            "eval_batches": 20,
            "checkpoint_every": 1000,
            "keep_checkpoints": 3,
            "log_every": 50,
            "max_bad_steps": 0,  # non-finite steps skipped (not applied) before the run stops
            "seed": 0,
        }
    )


def make_schedule(train_config: Any, num_train_steps: int | None = None) -> optax.Schedule:
    """Learning rate as a function of the optimizer step (the number of updates already applied).

    The warm-up reaches `lr * (step + 1) / warmup_steps` so the very first update is not wasted
    with a learning rate of exactly 0 (optax's `warmup_cosine_decay_schedule` starts at 0).

    Args:
      train_config: see `default_train_config`.
      num_train_steps: length of the cosine; defaults to `train_config.num_steps`.
    """
    lr = float(train_config.learning_rate)
    kind = train_config.schedule
    if kind == "constant":
        return optax.constant_schedule(lr)
    if kind == "step_halving":
        every = int(train_config.halve_every)
        if every <= 0:
            return optax.constant_schedule(lr)
        return lambda step: lr * 0.5 ** jnp.floor_divide(jnp.asarray(step), every)
    if kind != "cosine":
        raise ValueError(f"schedule={kind!r}; expected one of {SCHEDULES}")
    total = int(num_train_steps if num_train_steps is not None else train_config.num_steps)
    warmup = max(int(train_config.warmup_steps), 0)
    min_lr = lr * float(train_config.min_lr_ratio)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warm_lr = lr * jnp.minimum(1.0, (step + 1.0) / max(warmup, 1))
        frac = jnp.clip((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
        cos_lr = min_lr + (lr - min_lr) * 0.5 * (1.0 + jnp.cos(math.pi * frac))
        return jnp.where(step < warmup, warm_lr, cos_lr)

    return schedule


# A path component naming an embedding table: 'embedding' (nnx.Embed), 'token_embed', 'pos_emb',
# 'wte', ... but not e.g. 'embed_proj', which is an ordinary Linear.
_EMBEDDING_KEY = re.compile(r"(^|_)(emb|embed|embeds|embedding|embeddings|wte|wpe)$", re.IGNORECASE)
_NO_DECAY_LEAF_NAMES = frozenset({"bias", "scale", "gamma", "beta"})


def _path_names(path) -> list[str]:
    names = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                names.append(str(getattr(key, attr)))
                break
    return [n for n in names if n != "value"]


def _decays(path, leaf) -> bool:
    names = _path_names(path)
    if any(_EMBEDDING_KEY.search(n) for n in names):
        return False
    if names and names[-1] in _NO_DECAY_LEAF_NAMES:
        return False
    ndim = len(getattr(leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf, "shape", ()))
    axes = variable_logical_axes(leaf) if isinstance(leaf, nnx.Variable) else None
    if axes is not None:
        if axes and axes[0] == "vocab":  # a [vocab, embed] lookup table, whatever its name
            return False
        ndim -= sum(a == "layers" for a in axes)  # a stacked bias [layers, d] is still a vector
    return ndim >= 2


def weight_decay_mask(params: Any) -> Any:
    """True for the parameters AdamW decays: weight matrices, as in the authors' PyTorch code.

    Excluded: every vector (biases, LayerNorm scale/shift), counted without the stacked-layers
    axis, and embedding tables (first logical axis 'vocab', or a path key such as 'token_embed' or
    'embedding'). The output projection [embed, vocab] is an ordinary matrix and is decayed.

    The 'layers'-axis and 'vocab' rules need the `nnx.Variable` metadata. Compute the mask once
    from the (abstract) state and pass it to `make_optimizer`; as a bare callable it would also
    be called on raw arrays, e.g. by `nnx.Optimizer.update`, where stacked biases look 2-D.

    Returns:
      A pytree with a bool in place of every Variable (a prefix of both the Variable state and
      its pure-array version, so optax accepts it for either).
    """
    return jax.tree_util.tree_map_with_path(
        _decays, params, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )


def make_optimizer(
    train_config: Any,
    num_train_steps: int | None = None,
    decay_mask: Any = None,
) -> optax.GradientTransformation:
    """Global-norm clipping followed by AdamW (decoupled decay, scaled by the learning rate).

    Args:
      train_config: see `default_train_config`.
      num_train_steps: length of the cosine schedule (defaults to `train_config.num_steps`).
      decay_mask: bool pytree or callable; defaults to `weight_decay_mask` (see its caveat).
    """
    adamw = optax.adamw(
        make_schedule(train_config, num_train_steps),
        b1=float(train_config.b1),
        b2=float(train_config.b2),
        eps=float(train_config.get("eps", 1e-8)),
        weight_decay=float(train_config.weight_decay),
        mask=weight_decay_mask if decay_mask is None else decay_mask,
    )
    clip = float(train_config.clip_norm)
    return optax.chain(optax.clip_by_global_norm(clip), adamw) if clip > 0 else adamw


LossFn = Callable[[Any, Any, "jax.Array | None"], tuple[jax.Array, Any]]


def accumulate_gradients(
    loss_fn: LossFn,
    params: Any,
    batch: Any,
    rng: jax.Array | None,
    num_micro_batches: int,
) -> tuple[tuple[jax.Array, Any], Any]:
    """Mean loss, aux and gradients over `num_micro_batches` slices of `batch`, via `lax.scan`.

    With a per-token-mean loss and equal-sized micro-batches, the result equals
    `jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)` on the whole batch (without
    dropout), at 1/k of the activation memory. Micro-batch i takes rows i, i+k, i+2k, ... so
    each micro-batch stays spread over all data-parallel devices (the batch is sharded on axis 0).

    Args:
      loss_fn: (params, micro_batch, rng) -> (scalar loss, aux pytree of numeric arrays).
      params: differentiated pytree.
      batch: pytree of [B, ...] arrays; B must be divisible by `num_micro_batches`.
      rng: dropout key (micro-batch i uses `fold_in(rng, i)`) or None.
      num_micro_batches: k >= 1.

    Returns:
      ((loss, aux), grads), as `jax.value_and_grad(..., has_aux=True)` returns them; aux is
      averaged over micro-batches.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    k = int(num_micro_batches)
    if k <= 1:
        return grad_fn(params, batch, rng)

    def split(x_BxN):
        b = x_BxN.shape[0]
        if b % k:
            raise ValueError(f"batch size {b} is not divisible by {k} micro-batches")
        return jnp.swapaxes(x_BxN.reshape(b // k, k, *x_BxN.shape[1:]), 0, 1)

    micro_KxbxN = jax.tree.map(split, batch)
    first = jax.tree.map(lambda x: x[0], micro_KxbxN)
    loss_shape, aux_shape = jax.eval_shape(loss_fn, params, first, rng)
    zeros = lambda t: jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), t)  # noqa: E731
    init = (zeros(loss_shape), zeros(aux_shape), jax.tree.map(jnp.zeros_like, params))

    def body(carry, inputs):
        i, micro = inputs
        micro_rng = None if rng is None else jax.random.fold_in(rng, i)
        (loss, aux), grads = grad_fn(params, micro, micro_rng)
        add = lambda a, b: jax.tree.map(lambda x, y: x + y.astype(x.dtype), a, b)  # noqa: E731
        return (carry[0] + loss, add(carry[1], aux), add(carry[2], grads)), None

    (loss, aux, grads), _ = jax.lax.scan(body, init, (jnp.arange(k), micro_KxbxN))
    mean = lambda t: jax.tree.map(lambda x: x / k, t)  # noqa: E731
    return (loss / k, mean(aux)), mean(grads)
