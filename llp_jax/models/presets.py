"""Model presets: a model sized for a study (`sized`), tiny CPU sizes for every model, and the
paper's LLP sizes. Experiment config files (llp_jax/configs/) build on these."""

from __future__ import annotations

from llp_jax.models.base import StructuralSizes
from llp_jax.models.config import ModelConfig, code_faithful
from llp_jax.models.registry import model_class

BERT_CASED_VOCAB = 28996  # the paper's WordPiece vocabulary (bert-base-cased)
# n = 128: LLP segments of 32, 32 latents, 2 history segments, c = n / 4, G = n / 4.
TINY_SIZES = StructuralSizes(segments=4, latent_div=4, history_segments=2)


def sized(
    name: str, seq_len: int, sizes: StructuralSizes = StructuralSizes(), *, faithful=False, **fields
) -> ModelConfig:
    """Model `name` at window `seq_len`, its own structure sized by `sizes` (each model takes the
    fields it uses), clean or code-faithful; explicit `fields` win over both."""
    structure = model_class(name).structural_sizes(seq_len, sizes)
    cfg = ModelConfig(name=name, seq_len=seq_len, **structure).replace(**fields)
    if not faithful:
        return cfg.validate()
    return code_faithful(cfg).replace(**fields).validate()


def tiny(name: str, *, faithful: bool = False, **overrides) -> ModelConfig:
    """A CPU-sized model (d=64, 2 layers, n=128, V=256) with each model's structural sizes set so
    that every mechanism is exercised. Explicit overrides win over the code-faithful knobs."""
    cfg = sized(name, 128, TINY_SIZES, vocab_size=256, num_layers=2, d_model=64, num_heads=4)
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
