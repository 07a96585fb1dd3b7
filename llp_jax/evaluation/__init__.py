"""Evaluation and generation: perplexity protocols, decoders with caches, sampling, checkpoints.

perplexity.evaluate_perplexity(model, tokens, protocol='standard' | 'paper' | 'stream')
sampling.generate(model, prompt, num_new, rng, method='auto' | 'cached' | 'recompute', ...)
sampling.generate_stream(...)              # the same tokens, block by block as they are made
text_stream.TextStream(tokenizer)          # their text, piece by piece, exactly the decoded whole
sampling.decode_logits(model, tokens)      # teacher-forced logits of the same decoders
checkpoints.load_model(workdir, model_config=None)
"""

from llp_jax.evaluation.checkpoints import (
    CheckpointError,
    ConfigMismatchError,
    LoadedModel,
    load_model,
)
from llp_jax.evaluation.decoders import LatentCache, Recompute, RingCache, make_decoder
from llp_jax.evaluation.errors import EvaluationError
from llp_jax.evaluation.perplexity import PROTOCOLS, PerplexityResult, evaluate_perplexity
from llp_jax.evaluation.sample_settings import SampleConfig
from llp_jax.evaluation.sampling import (
    Sampler,
    decode_logits,
    generate,
    generate_recompute,
    generate_stream,
    sample_logits,
)
from llp_jax.evaluation.text_stream import TextStream
from llp_jax.storage import CheckpointNotFoundError

__all__ = [
    "PROTOCOLS",
    "CheckpointError",
    "CheckpointNotFoundError",
    "ConfigMismatchError",
    "EvaluationError",
    "LatentCache",
    "LoadedModel",
    "PerplexityResult",
    "Recompute",
    "RingCache",
    "SampleConfig",
    "Sampler",
    "TextStream",
    "decode_logits",
    "evaluate_perplexity",
    "generate",
    "generate_recompute",
    "generate_stream",
    "load_model",
    "make_decoder",
    "sample_logits",
]
