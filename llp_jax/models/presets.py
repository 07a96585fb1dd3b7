"""Model presets: tiny CPU sizes for every model and the paper's LLP sizes.

Experiment config files (llp_jax/configs/) build on these.
"""

from __future__ import annotations

from llp_jax.models.config import LATENT_MODELS, ModelConfig, code_faithful

BERT_CASED_VOCAB = 28996  # the paper's WordPiece vocabulary (bert-base-cased)


def tiny(name: str, *, faithful: bool = False, **overrides) -> ModelConfig:
    """A CPU-sized model (d=64, 2 layers, n=128) with each model's structural sizes set so that
    every mechanism is exercised: 32 latents, 2 history segments, c = n/4, segments of 32."""
    base = dict(
        name=name,
        vocab_size=256,
        seq_len=128,
        num_layers=2,
        d_model=64,
        num_heads=4,
        latent_len=32 if name in LATENT_MODELS else 0,
        history_segments=2 if name == "enhanced_v2" else 1,
        segment_len=32 if name == "llp" else 0,
    )
    cfg = ModelConfig(**base)
    # Explicit overrides win over the code-faithful knobs.
    return (code_faithful(cfg) if faithful else cfg).replace(**overrides).validate()


def paper_llp(num_layers: int = 18, num_heads: int = 12, **overrides) -> ModelConfig:
    """The paper's code-faithful LLP: d=768, V=28996, n=2048, S=8 (s=256).

    18 layers, 12 heads: 172,124,740 parameters ("172.12M", Wikitext-103 ppl 17.82);
    24 layers, 6 heads: 214,646,596 (Wikitext-103 17.43, PG-19 18.83).
    """
    cfg = ModelConfig(
        name="llp",
        vocab_size=BERT_CASED_VOCAB,
        seq_len=2048,
        num_layers=num_layers,
        d_model=768,
        num_heads=num_heads,
        segment_len=256,
    )
    return code_faithful(cfg).replace(**overrides).validate()
