"""The one list of the zoo's models: name -> class. Every other list of names derives from it.

Adding a model: its file (a `LanguageModel` subclass declaring its facts, see models/base.py),
one line here, and its tests.
"""

from __future__ import annotations

from llp_jax.errors import ConfigError
from llp_jax.models.base import LanguageModel
from llp_jax.models.enhanced_v1 import EnhancedV1
from llp_jax.models.enhanced_v2 import EnhancedV2
from llp_jax.models.enhanced_v3 import EnhancedV3
from llp_jax.models.llp import LLP
from llp_jax.models.perceiver_ar import PerceiverAR
from llp_jax.models.s2attn import S2Attn
from llp_jax.models.transformer import Transformer

MODELS: dict[str, type[LanguageModel]] = {
    cls.name: cls
    for cls in (Transformer, PerceiverAR, EnhancedV1, EnhancedV2, EnhancedV3, LLP, S2Attn)
}
MODEL_NAMES = tuple(MODELS)
# Models that score only their last `latent_len` positions.
LATENT_MODELS = tuple(name for name, cls in MODELS.items() if cls.scores_latents)


def model_class(name: str) -> type[LanguageModel]:
    """The class registered under `name`; a one-line ConfigError for an unknown name."""
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is unknown; choose one of {MODEL_NAMES}")
    return MODELS[name]
