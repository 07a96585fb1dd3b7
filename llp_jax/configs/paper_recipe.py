"""What the paper presets share: the authors' training recipe and the comparison models.

Not a config itself; `paper_wikitext103.py`, `paper_pg19.py` and `paper_enwik8.py` build on it.
The recipe is the one in the authors' released code (github MetaMain/ECPTransformer): AdamW
betas (0.9, 0.95), weight decay 0.1 on Linear weights, lr 2e-4 halved every 100k steps with no
warm-up, gradient clipping 1.0, 500k steps, dropout 0.05 (the code-faithful models carry it),
and 8 sequences per forward pass with 2 gradient-accumulation passes per update. Our
`train.batch_size` is the batch of one update, split into `grad_accum_steps` micro-batches,
so the authors' 8 x 2 is batch_size=16, grad_accum_steps=2.
"""

from __future__ import annotations

import ml_collections

from llp_jax.configs.base import get_base_config
from llp_jax.models import (
    LATENT_MODELS,
    ConfigError,
    ModelConfig,
    StructuralSizes,
    paper_llp,
    sized,
)
from llp_jax.models.presets import BERT_CASED_VOCAB

COMPARISON_MODELS = LATENT_MODELS  # perceiver_ar, enhanced_v1, enhanced_v2, enhanced_v3
# l = n / 2 latents; enhanced_v2 splits the history into the code's default 8 segments
# (`--num_segments`); enhanced_v3 compresses it to c = n / 4 (the code's compression).
COMPARISON_SIZES = StructuralSizes(latent_div=2, history_segments=8)


def comparison_model(name: str, vocab_size: int = BERT_CASED_VOCAB) -> ModelConfig:
    """PerceiverAR / V1 / V2 / V3, code-faithful, at the width and depth of the 18-layer LLP.

    d = 768, H = 12, L = 18, n = 2048, l = 1024 latents (see COMPARISON_SIZES). The same width,
    depth and context as LLP-18 make the comparison one of attention patterns only. (The released
    code's argparse defaults, L = 12, H = 6, are not the paper's runs, and the paper does not
    restate the sizes of its comparison runs.) Override e.g. `--config.model.latent_len=512`.
    """
    if name not in COMPARISON_MODELS:
        raise ConfigError(f"Unknown comparison model {name!r}; choose one of {COMPARISON_MODELS}.")
    return sized(
        name, 2048, COMPARISON_SIZES, faithful=True, vocab_size=vocab_size, num_layers=18,
        d_model=768, num_heads=12,
    )  # fmt: skip


def paper_model(arg: str, vocab_size: int = BERT_CASED_VOCAB) -> ModelConfig:
    """'llp18' (172,124,740 parameters at V=28996), 'llp24' (214,646,596), or a comparison name."""
    if arg == "llp18":
        model = paper_llp(18, 12)
    elif arg == "llp24":
        model = paper_llp(24, 6)
    else:
        return comparison_model(arg, vocab_size)
    return model if vocab_size == model.vocab_size else model.replace(vocab_size=vocab_size)


def paper_config(model: ModelConfig, corpus: str) -> ml_collections.ConfigDict:
    """An experiment config with the authors' recipe, the model's vocabulary set explicitly."""
    config = get_base_config(model)
    config.model.vocab_size = model.vocab_size
    config.data.corpus = corpus
    config.train.update(
        schedule="step_halving",
        halve_every=100_000,
        learning_rate=2e-4,
        warmup_steps=0,
        b1=0.9,
        b2=0.95,
        weight_decay=0.1,
        clip_norm=1.0,
        batch_size=16,
        grad_accum_steps=2,
        num_steps=500_000,
        eval_every=5000,
        eval_batches=50,
        checkpoint_every=5000,
        log_every=100,
    )
    return config


def sentencepiece_stand_in(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """SentencePiece with the BERT-cased vocabulary size, trained on a train-split sample.

    The paper tokenises with bert-base-cased WordPiece (V = 28996), which cannot be downloaded
    here; a 28996-piece BPE model trained on 20M characters of the training split stands in.
    Per-token perplexities therefore differ from the paper's; word-level ones are comparable.
    """
    config.data.update(
        tokenizer="sentencepiece",
        vocab_size=BERT_CASED_VOCAB,
        sp_model_type="bpe",
        sp_sample_chars=20_000_000,
    )
    return config
