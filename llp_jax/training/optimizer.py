"""Learning-rate schedules and AdamW with its weight-decay mask (the hyper-parameters are
`training.config.TrainConfig`)."""

from __future__ import annotations

import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from llp_jax.errors import ConfigError
from llp_jax.training.config import SCHEDULES
from llp_jax.training.mesh import variable_logical_axes


def make_schedule(train_config: Any, num_train_steps: int | None = None) -> optax.Schedule:
    """Learning rate as a function of the optimizer step (the number of updates already applied).

    The warm-up reaches `lr * (step + 1) / warmup_steps` so the very first update is not wasted
    with a learning rate of exactly 0 (optax's `warmup_cosine_decay_schedule` starts at 0).

    Args:
      train_config: a `TrainConfig` (or anything with its fields).
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
        raise ConfigError(f"train.schedule={kind!r} must be one of {SCHEDULES}")
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
      train_config: a `TrainConfig` (or anything with its fields).
      num_train_steps: length of the cosine schedule (defaults to `train_config.num_steps`).
      decay_mask: bool pytree or callable; defaults to `weight_decay_mask` (see its caveat).
    """
    adamw = optax.adamw(
        make_schedule(train_config, num_train_steps),
        b1=float(train_config.b1),
        b2=float(train_config.b2),
        eps=float(train_config.eps),
        weight_decay=float(train_config.weight_decay),
        mask=weight_decay_mask if decay_mask is None else decay_mask,
    )
    clip = float(train_config.clip_norm)
    return optax.chain(optax.clip_by_global_norm(clip), adamw) if clip > 0 else adamw
