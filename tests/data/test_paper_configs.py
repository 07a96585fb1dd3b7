"""The paper presets: parameter counts (under eval_shape, nothing allocated), recipe, data."""

import importlib

import pytest

from llp_jax import models
from llp_jax.configs import paper_recipe

V, D, N = 28996, 768, 2048


def get_config(module: str, arg: str | None = None):
    mod = importlib.import_module(f"llp_jax.configs.{module}")
    return mod.get_config() if arg is None else mod.get_config(arg)


def count(config) -> int:
    return models.count_params(models.ModelConfig.from_any(config.model))


def baseline_count(layers: int, heads: int, vocab: int = V, extra_per_layer: int = 0) -> int:
    """Code-faithful PerceiverAR / V1 / V2: untied embedding and head, shared K=V, K/V LayerNorm."""
    per_layer = 11 * D * D + 10 * D + 2 * (D // heads) + extra_per_layer
    return 2 * vocab * D + vocab + 2 * D + layers * per_layer


@pytest.mark.parametrize(
    "module, arg, expected",
    [
        ("paper_wikitext103", None, 172_124_740),  # "172.12M", Wikitext-103 ppl 17.82.
        ("paper_wikitext103", "llp18", 172_124_740),
        ("paper_wikitext103", "llp24", 214_646_596),  # Wikitext-103 17.43.
        ("paper_pg19", None, 214_646_596),  # PG-19 18.83.
    ],
)
def test_llp_presets_have_the_papers_parameter_counts(module, arg, expected):
    config = get_config(module, arg)
    assert count(config) == expected
    assert config.model.seq_len == N and config.model.seq_len // config.model.segment_len == 8
    assert config.model.vocab_size == V  # Set explicitly, not "the tokenizer's" (0).


@pytest.mark.parametrize("name", paper_recipe.COMPARISON_MODELS)
def test_comparison_presets_build(name):
    config = get_config("paper_wikitext103", name)
    assert config.model.name == name and config.model.latent_len == 1024
    # V3's compression Linear(m -> c) exists in every layer in the authors' code.
    m, c = N - 1024, N // 4
    extra = (m * c + c) if name == "enhanced_v3" else 0
    assert count(config) == baseline_count(18, 12, extra_per_layer=extra)


def test_enwik8_preset_is_byte_level():
    config = get_config("paper_enwik8")
    assert config.data.corpus == "tfds:enwik8" and config.data.tokenizer == "byte"
    assert config.model.vocab_size == 259
    assert count(config) == 214_646_596 - 2 * (V - 259) * D - (V - 259)


@pytest.mark.parametrize("module", ["paper_wikitext103", "paper_pg19", "paper_enwik8"])
def test_authors_recipe_and_launch_commands(module):
    config = get_config(module)
    t = config.train
    assert (t.schedule, t.halve_every, t.learning_rate, t.warmup_steps) == (
        "step_halving",
        100_000,
        2e-4,
        0,
    )
    assert (t.b1, t.b2, t.weight_decay, t.clip_norm, t.num_steps) == (0.9, 0.95, 0.1, 1.0, 500_000)
    assert t.batch_size // t.grad_accum_steps == 8 and t.grad_accum_steps == 2  # 8 x 2.
    assert config.model.dropout == 0.05
    doc = importlib.import_module(f"llp_jax.configs.{module}").__doc__
    assert doc.count(f"--config=llp_jax/configs/{module}.py") >= 2
    assert "GPU" in doc and "TPU VM" in doc


@pytest.mark.parametrize("module", ["paper_wikitext103", "paper_pg19"])
def test_word_level_presets_use_the_sentencepiece_stand_in(module):
    data = get_config(module).data
    assert data.corpus.startswith("tfds:")
    assert (data.tokenizer, data.vocab_size) == ("sentencepiece", V)


@pytest.mark.parametrize("module", ["tiny", "paper_wikitext103", "paper_pg19", "paper_enwik8"])
def test_a_config_file_wrapping_a_shipped_one_may_pass_its_own_default_on(module, tmp_path):
    """`def get_config(arg=None): return tiny.get_config(arg)` is how a config file of your own
    reuses ours (the error for a file without get_config suggests that signature): None is the
    shipped file's default, not an AttributeError."""
    from llp_jax import configs

    mine = tmp_path / "mine.py"
    mine.write_text(
        f"from llp_jax.configs import {module}\n\n"
        f"def get_config(arg=None):\n    return {module}.get_config(arg)\n"
    )
    default = importlib.import_module(f"llp_jax.configs.{module}").get_config()
    assert configs.load(str(mine)).to_dict() == default.to_dict()
