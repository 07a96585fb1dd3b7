"""Building models: `build(config)` turns a ModelConfig (or a `config.model` ConfigDict) into a
model; `abstract_model` and `count_params` do the same without allocating parameters."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx

from llp_jax import backend
from llp_jax.models.base import LanguageModel
from llp_jax.models.config import ModelConfig
from llp_jax.models.inputs import as_rng


def build(config: Any, *, rngs: nnx.Rngs | None = None, seed: int = 0) -> LanguageModel:
    """Builds the model named by `config.name` (validated first, one-line ConfigError if bad)."""
    cfg = ModelConfig.from_any(config)
    backend.check()
    if rngs is None:
        rngs = nnx.Rngs(params=as_rng(seed, name="seed"))
    return cfg.model_class(cfg, rngs=rngs)


def abstract_model(config: Any) -> LanguageModel:
    """The model with shapes only (`nnx.eval_shape`): no parameter memory is allocated."""
    cfg = ModelConfig.from_any(config)
    return nnx.eval_shape(lambda: cfg.model_class(cfg, rngs=nnx.Rngs(params=0)))


def param_shapes(config: Any) -> dict[str, tuple]:
    """Every parameter's shape by its '/'-joined path (e.g. 'blocks/attn/q/kernel'), without
    allocating: what converters and weight loaders check tensors against."""
    flat: dict[str, tuple] = {}

    def walk(tree, path):
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{path}{key}/")
            else:
                flat[f"{path}{key}"] = tuple(value.shape)

    walk(nnx.to_pure_dict(nnx.state(abstract_model(config), nnx.Param)), "")
    return flat


def count_params(model_or_config: Any) -> int:
    """Number of parameters; accepts a model or a config (then counted without allocation)."""
    model = model_or_config
    if not isinstance(model, nnx.Module):
        model = abstract_model(model_or_config)
    state = nnx.state(model, nnx.Param)
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(state)))
