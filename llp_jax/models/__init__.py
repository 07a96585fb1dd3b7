"""The model zoo: transformer, perceiver_ar, enhanced_v1/v2/v3, llp, s2attn (docs/models.md)."""

from llp_jax.models.attention import attend
from llp_jax.models.base import LanguageModel, StructuralSizes
from llp_jax.models.config import ConfigError, ModelConfig, code_faithful
from llp_jax.models.masks import MaskSpec
from llp_jax.models.presets import paper_llp, sized, tiny
from llp_jax.models.registry import LATENT_MODELS, MODEL_NAMES, MODELS, model_class
from llp_jax.models.zoo import abstract_model, build, count_params, param_shapes

__all__ = [
    "LATENT_MODELS",
    "MODEL_NAMES",
    "MODELS",
    "ConfigError",
    "LanguageModel",
    "MaskSpec",
    "ModelConfig",
    "StructuralSizes",
    "abstract_model",
    "param_shapes",
    "attend",
    "build",
    "code_faithful",
    "count_params",
    "model_class",
    "paper_llp",
    "sized",
    "tiny",
]
