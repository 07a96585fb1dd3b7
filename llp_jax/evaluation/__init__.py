"""Evaluation and generation: perplexity protocols, decoders with caches, sampling, checkpoints.

perplexity.evaluate_perplexity(model, tokens, protocol='standard' | 'paper' | 'stream')
sampling.generate(model, prompt, num_new, rng, method='auto' | 'cached' | 'recompute', ...)
sampling.decode_logits(model, tokens)      # teacher-forced logits of the same decoders
checkpoints.load_model(workdir, model_config=None)
"""

from llp_jax.evaluation.checkpoints import (
    CheckpointError,
    ConfigMismatchError,
    LoadedModel,
    NoCheckpointError,
    load_model,
)
from llp_jax.evaluation.decoders import LatentCache, Recompute, RingCache, make_decoder
from llp_jax.evaluation.errors import EvaluationError
from llp_jax.evaluation.perplexity import PROTOCOLS, PerplexityResult, evaluate_perplexity
from llp_jax.evaluation.sampling import (
    Sampler,
    decode_logits,
    generate,
    generate_recompute,
    sample_logits,
)

__all__ = [
    "PROTOCOLS",
    "CheckpointError",
    "ConfigMismatchError",
    "EvaluationError",
    "LatentCache",
    "LoadedModel",
    "NoCheckpointError",
    "PerplexityResult",
    "Recompute",
    "RingCache",
    "Sampler",
    "decode_logits",
    "evaluate_perplexity",
    "generate",
    "generate_recompute",
    "load_model",
    "make_decoder",
    "sample_logits",
]
