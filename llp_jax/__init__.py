"""llp_jax: a JAX/Flax NNX zoo of efficient Perceiver-family autoregressive language models.

`import llp_jax` is cheap: the subpackages (and the few names below) load on first use, so
`llp_jax.models.build(cfg)` works after a bare `import llp_jax` without importing Orbax or Grain
until training or evaluation is touched.

Layers, each importing only those above it in this list:
    llp_jax.errors, llp_jax.schema   the one-line errors; typed config sections
    llp_jax.models       ModelConfig, build, tiny, paper_llp, code_faithful, attend, MaskSpec
    llp_jax.data         corpora, tokenizers, the Grain pipeline, tfds builders
    llp_jax.storage      the workdir on disk: checkpoints (save, restore, load_params), metrics
    llp_jax.training     typed train/mesh sections, mesh, train step, the trainer loop
    llp_jax.evaluation   perplexity protocols, decoders, sampling, load_model
    llp_jax.configs      Python config files for `experiments/train.py --config=...`
    llp_jax.studies      train_and_evaluate, the same-budget comparison, benchmarks
(training and evaluation are siblings: neither imports the other.)
"""

import importlib as _importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "configs", "data", "errors", "evaluation", "models", "schema", "storage", "studies", "training",
)  # fmt: skip
_NAMES = {
    "LLPError": "errors",
    "ModelConfig": "models",
    "build": "models",
    "train_and_evaluate": "studies",
    "TrainingInterrupted": "training",
    "load_model": "evaluation",
    "evaluate_perplexity": "evaluation",
    "generate": "evaluation",
    "generate_stream": "evaluation",
}
__all__ = [*_SUBPACKAGES, *_NAMES, "__version__"]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(_importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
