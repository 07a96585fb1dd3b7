"""Building models: `build(config)` turns a ModelConfig (or a `config.model` ConfigDict) into a
model; `abstract_model` and `count_params` do the same without allocating parameters."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llp_jax import backend
from llp_jax.errors import ConfigError
from llp_jax.models.base import LanguageModel
from llp_jax.models.config import ModelConfig
from llp_jax.models.inputs import as_rng


def build(config: Any, *, rngs: nnx.Rngs | None = None, seed: int = 0) -> LanguageModel:
    """Builds the model named by `config.name` (validated first, one-line ConfigError if bad;
    a model whose weights cannot fit the memory of the device they go to: `check_fits`)."""
    cfg = ModelConfig.from_any(config)
    backend.check()
    check_fits(cfg)
    if rngs is None:
        rngs = nnx.Rngs(params=as_rng(seed, name="seed"))
    return cfg.model_class(cfg, rngs=rngs)


def check_fits(config: ModelConfig) -> None:
    """One ConfigError line where the model's float32 weights alone need more than the memory of
    the device an eager build puts them on.

    Why: built eagerly past the host's memory, the weights woke the kernel's OOM killer, and the
    process died without a word (`benchmark_decode --d_model=12000`, 27.6 GB on a 24 GB host; an
    evaluation of a checkpoint trained on a larger machine). Traced builds (the trainer's jitted
    init, `abstract_model`) allocate nothing here: the trainer checks its sharded state itself.
    """
    probe = jnp.zeros((), jnp.int8)
    if isinstance(probe, jax.core.Tracer):
        return
    memory = backend.device_memory(list(probe.devices()))
    if memory is None:
        return
    params = _param_count(config)
    if 4 * params > memory[0]:
        raise ConfigError(
            f"model {config.name}'s weights need {backend.size_text(4 * params)} ({params:,} "
            f"float32 parameters), more than the {backend.size_text(memory[0])} of {memory[1]}; "
            "use a smaller model (its d_model, num_layers, mlp_ratio or vocab_size) or a machine "
            "with more memory"
        )


@functools.lru_cache(maxsize=512)
def _param_count(config: ModelConfig) -> int:
    return count_params(config)


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
