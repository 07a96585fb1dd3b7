"""What a comparison runs: its rows (`Variant`: a zoo model, clean, with the authors' code knobs
or at another precision) and their shared budget and size (`CompareSpec`), as model and trainer
configs. `studies/compare.py` trains and evaluates them; `studies/study_spec.py` builds the
seeded study's runs from them.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from llp_jax import models
from llp_jax.configs.base import get_base_config


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of the comparison: a zoo model, clean or with the authors' code knobs, and
    `changes` to its ModelConfig (e.g. the compute dtype) as (field, value) pairs."""

    label: str
    name: str
    faithful: bool = False
    changes: tuple[tuple[str, object], ...] = ()


# Every registered model, clean; and the paper's model with the authors' code knobs after it.
VARIANTS = tuple(
    v
    for name in models.MODEL_NAMES
    for v in (Variant(name, name),)
    + ((Variant("llp (code)", "llp", True),) if name == "llp" else ())
)
# The authors' zoo (the latent models and llp) with their code knobs: the study's extra rows.
CODE_VARIANTS = tuple(
    Variant(f"{name} (code)", name, True) for name in (*models.LATENT_MODELS, "llp")
)
# Mixed precision (bfloat16 activations and matmuls, float32 parameters, softmax and LayerNorm
# statistics): `--variants=llp,"llp (bf16)"` checks its validation loss against float32's.
PRECISION_VARIANTS = (Variant("llp (bf16)", "llp", changes=(("compute_dtype", "bfloat16"),)),)
VARIANTS_BY_LABEL = {v.label: v for v in (*VARIANTS, *CODE_VARIANTS, *PRECISION_VARIANTS)}


@dataclasses.dataclass(frozen=True)
class CompareSpec:
    """The shared budget and model size (size a new one with `estimate_runtime`).

    Attributes:
      variants: labels of VARIANTS to run, in table order.
      seq_len, d_model, num_layers, num_heads: n, d, L, H of every model.
      segments: llp segments per window (s = n / segments; the paper: 8).
      latent_div: latent models use l = n / latent_div queries.
      history_segments: enhanced_v2's S_h.
      batch_size, num_steps, learning_rate, warmup_steps: the optimiser budget (AdamW, cosine).
      eval_every, eval_batches: in-training validation (the loss-vs-step plot).
      eval_tokens: tokens of each split the final perplexities use (0 = the whole split).
      seed: parameter initialisation, dropout and data order.
      tokenizer, vocab_size: 'byte', or 'sentencepiece' with its vocabulary size.
      schedule, halve_every: 'cosine', or the paper's recipe (`train.schedule`).
    """

    variants: tuple[str, ...] = tuple(v.label for v in VARIANTS)
    seq_len: int = 512
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    segments: int = 8
    latent_div: int = 4
    history_segments: int = 3
    batch_size: int = 8
    num_steps: int = 250
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    eval_every: int = 50
    eval_batches: int = 4
    eval_tokens: int = 131_072
    seed: int = 0
    tokenizer: str = "byte"
    vocab_size: int = 2048
    schedule: str = "cosine"
    halve_every: int = 0


# A few-minute smoke version (2 tiny models, a handful of steps) for tests and `--quick`.
QUICK = CompareSpec(
    variants=("transformer", "llp"),
    seq_len=64,
    d_model=32,
    num_layers=2,
    num_heads=2,
    batch_size=8,
    num_steps=6,
    warmup_steps=2,
    eval_every=3,
    eval_batches=1,
    eval_tokens=1024,
)


def model_config(spec: CompareSpec, variant: Variant) -> models.ModelConfig:
    """The variant's model at the shared size (vocab_size 1: replaced by the tokenizer's)."""
    sizes = models.StructuralSizes(
        segments=spec.segments, latent_div=spec.latent_div, history_segments=spec.history_segments
    )
    return models.sized(
        variant.name, spec.seq_len, sizes, faithful=variant.faithful, vocab_size=1,
        num_layers=spec.num_layers, d_model=spec.d_model, num_heads=spec.num_heads,
    ).replace(**dict(variant.changes))  # fmt: skip


def experiment_config(spec: CompareSpec, variant: Variant) -> ml_collections.ConfigDict:
    """A trainer config (llp_jax/configs style) for one variant: Austen, byte tokens."""
    config = get_base_config(model_config(spec, variant))
    config.data.tokenizer = spec.tokenizer
    config.data.vocab_size = spec.vocab_size
    config.data.seed = spec.seed
    config.train.seed = spec.seed
    config.train.update(
        batch_size=spec.batch_size,
        num_steps=spec.num_steps,
        learning_rate=spec.learning_rate,
        warmup_steps=spec.warmup_steps,
        schedule=spec.schedule,
        halve_every=spec.halve_every,
        eval_every=spec.eval_every,
        eval_batches=spec.eval_batches,
        checkpoint_every=spec.num_steps,  # only the final state: evaluation reads it in memory
        keep_checkpoints=1,
        log_every=max(1, min(10, spec.num_steps // 10)),
    )
    config.sample.num_tokens = 0
    return config
