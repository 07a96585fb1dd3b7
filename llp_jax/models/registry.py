"""Models by name: `build(config)` turns a ModelConfig (or `config.model` ConfigDict) into a model."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx

from llp_jax.models.base import LanguageModel
from llp_jax.models.config import ModelConfig
from llp_jax.models.enhanced_v1 import EnhancedV1
from llp_jax.models.enhanced_v2 import EnhancedV2
from llp_jax.models.enhanced_v3 import EnhancedV3
from llp_jax.models.llp import LLP
from llp_jax.models.perceiver_ar import PerceiverAR
from llp_jax.models.s2attn import S2Attn
from llp_jax.models.transformer import Transformer

MODELS: dict[str, type[LanguageModel]] = {
    "transformer": Transformer,
    "perceiver_ar": PerceiverAR,
    "enhanced_v1": EnhancedV1,
    "enhanced_v2": EnhancedV2,
    "enhanced_v3": EnhancedV3,
    "llp": LLP,
    "s2attn": S2Attn,
}


def build(config: Any, *, rngs: nnx.Rngs | None = None, seed: int = 0) -> LanguageModel:
    """Builds the model named by `config.name` (validated first, one-line ConfigError if bad)."""
    cfg = ModelConfig.from_any(config)
    return MODELS[cfg.name](cfg, rngs=rngs if rngs is not None else nnx.Rngs(params=seed))


def abstract_model(config: Any) -> LanguageModel:
    """The model with shapes only (`nnx.eval_shape`): no parameter memory is allocated."""
    cfg = ModelConfig.from_any(config)
    return nnx.eval_shape(lambda: MODELS[cfg.name](cfg, rngs=nnx.Rngs(params=0)))


def count_params(model_or_config: Any) -> int:
    """Number of parameters; accepts a model or a config (then counted without allocation)."""
    model = model_or_config
    if not isinstance(model, nnx.Module):
        model = abstract_model(model_or_config)
    state = nnx.state(model, nnx.Param)
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(state)))
