"""The model zoo: transformer, perceiver_ar, enhanced_v1/v2/v3, llp, s2attn (see MODELS.md)."""

from llp_jax.models.attention import MaskSpec, attend
from llp_jax.models.base import LanguageModel
from llp_jax.models.config import (
    LATENT_MODELS,
    MODEL_NAMES,
    ConfigError,
    ModelConfig,
    code_faithful,
)
from llp_jax.models.presets import paper_llp, tiny
from llp_jax.models.registry import MODELS, abstract_model, build, count_params

__all__ = [
    "LATENT_MODELS",
    "MODEL_NAMES",
    "MODELS",
    "ConfigError",
    "LanguageModel",
    "MaskSpec",
    "ModelConfig",
    "abstract_model",
    "attend",
    "build",
    "code_faithful",
    "count_params",
    "paper_llp",
    "tiny",
]
