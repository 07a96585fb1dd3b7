"""What the Python API gets from a user who calls it wrongly: a one-line LLPError naming the
problem and the fix, never a shape error from inside an einsum, and never NaN logits from token
ids outside the vocabulary (`jnp.take` fills those rows with NaN, so nothing else would notice)."""

import dataclasses
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import llp_jax
from llp_jax import configs, models
from llp_jax.errors import ConfigError, InputError, LLPError
from llp_jax.evaluation.checkpoints import LoadedModel


@pytest.fixture(scope="module")
def model():
    return llp_jax.build(models.tiny("llp", num_layers=1, d_model=32))


BAD_TOKENS = [
    (np.zeros(128, np.int32), "got shape \\(128,\\); add the batch axis"),
    (np.zeros((1, 2, 128), np.int32), "got shape \\(1, 2, 128\\)"),
    (np.zeros((1, 128), np.float32), "integer token ids, got dtype float32"),
    (np.zeros((1, 128), bool), "integer token ids, got dtype bool"),
    (
        np.full((1, 128), 256),
        "token id 256 in tokens is outside the model's vocabulary \\[0, 256\\)",
    ),
    (np.full((1, 128), -1), "token id -1 in tokens is outside"),
    ([[1, 2, 3]], "must be int \\[batch, length\\], not a list"),
]


@pytest.mark.parametrize("tokens, message", BAD_TOKENS)
def test_model_call_rejects_bad_tokens(model, tokens, message):
    for form in (tokens, jnp.asarray(tokens) if hasattr(tokens, "shape") else tokens):
        with pytest.raises(InputError, match=message):
            model(form)


def test_a_vocabulary_id_at_the_edge_is_fine_and_a_traced_call_checks_rank_and_dtype(model):
    logits = model(jnp.full((1, 128), 255, jnp.int32))
    assert bool(jnp.isfinite(logits).all())
    with pytest.raises(InputError, match="dtype float32"):
        jax.jit(lambda t: model(t))(jnp.zeros((1, 128), jnp.float32))
    # Inside jit the values are unknown: no range check, no error, no host sync.
    assert jax.jit(lambda t: model(t))(jnp.full((1, 128), 7, jnp.int32)).shape == (1, 128, 256)


def test_llp_stream_checks_its_tokens(model):
    with pytest.raises(InputError, match="token id 300"):
        model.stream(jnp.full((1, 64), 300, jnp.int32))
    with pytest.raises(InputError, match="add the batch axis"):
        model.stream(jnp.zeros(64, jnp.int32))


@pytest.mark.parametrize(
    "tokens, message",
    [
        (np.arange(300), "token id 299 in tokens_N is outside"),
        (list(range(300)), "token id 299 in tokens_N is outside"),
        (np.zeros((2, 300), np.int32), "must be int \\[N\\] \\(one token stream\\), got shape"),
        (np.ones(300, np.float64), "dtype float64"),
        ([], "the stream has 0 token"),
        (
            [[1, 2], [3]],
            "must be int \\[N\\] \\(one token stream\\): got 2 rows of different "
            "lengths; pass one stream \\(a split's tokens, not a batch of windows\\)$",
        ),
        ("some text", "tokens_N is text; pass its token ids: tokenizer.encode\\(text\\)"),
    ],
)
def test_perplexity_rejects_bad_streams(model, tokens, message):
    with pytest.raises(LLPError, match=message):
        llp_jax.evaluate_perplexity(model, tokens)


def test_perplexity_and_generate_take_lists_and_load_models_result(model):
    loaded = LoadedModel(model=model, config=model.cfg, step=0, workdir="unused")
    stream = [1, 2, 3] * 100
    expected = llp_jax.evaluate_perplexity(model, np.asarray(stream)).perplexity
    assert llp_jax.evaluate_perplexity(loaded, stream).perplexity == pytest.approx(expected)
    out = llp_jax.generate(loaded, [[1, 2, 3]], 4, 0)
    assert out.shape == (1, 7) and np.array_equal(np.asarray(out[:, :3]), [[1, 2, 3]])
    from llp_jax.evaluation import decode_logits, generate_recompute

    assert generate_recompute(loaded, [[1, 2, 3]], 4, 0, window=128).shape == (1, 7)
    assert decode_logits(loaded, [[1, 2, 3]]).shape == (1, 3, 256)
    with pytest.raises(InputError, match="token id 256 in tokens"):
        decode_logits(model, [[1, 256]])
    with pytest.raises(InputError, match="model must be a zoo model"):
        llp_jax.evaluate_perplexity("workdir/tiny_llp", stream)
    with pytest.raises(LLPError, match="batch_size=0 must be >= 1"):
        llp_jax.evaluate_perplexity(model, stream, batch_size=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 2.0}, "batch_size=2.0 must be an int >= 1$"),
        ({"batch_size": None}, "batch_size=None must be an int >= 1$"),
        ({"window": -1}, "window=-1 must be >= 2 \\(None: the protocol's default\\)"),
        ({"window": 1}, "window=1 must be >= 2"),
        ({"window": 64.0}, "window=64.0 must be an int"),
        ({"stride": 0}, "stride=0 must be >= 1"),
        ({"stride": "8", "protocol": "paper"}, "stride='8'"),
        ({"window": True}, "window=True"),
    ],
)
def test_perplexity_window_arguments_are_checked_for_every_protocol(model, kwargs, message):
    with pytest.raises(LLPError, match=message) as err:
        llp_jax.evaluate_perplexity(model, [1, 2, 3] * 100, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: models.tiny("llp", d_modle=32),
            "no field\\(s\\) \\['d_modle'\\]; did you mean 'd_model'",
        ),
        (lambda: models.tiny("llp").replace(segment=16), "did you mean 'segment_len'"),
        (lambda: models.tiny("llp", d_model="64"), "model.d_model='64' must be an int"),
        (lambda: models.tiny("llp", num_layers=2.0), "model.num_layers=2.0 must be an int"),
        (lambda: models.tiny("llp", dropout="0.1"), "model.dropout='0.1' must be a float"),
        (lambda: models.tiny("llp", shared_kv=1), "model.shared_kv=1 must be a bool"),
        # Valid as numbers, not as what the model computes with (each was a NaN first step).
        (lambda: models.tiny("llp", dropout=0.9999999999), "is 1 at the masks' resolution"),
        (lambda: models.tiny("llp", rope_theta=1e-50), "rope_theta=1e-50 gives RoPE freq"),
        (lambda: models.tiny("llp", rope_theta=0.0), "rope_theta=0.0 gives RoPE frequencies"),
        (lambda: models.tiny("llp", rope_theta=-2.0), "rope_theta=-2.0 gives RoPE frequencies"),
        (lambda: models.tiny("llp", rope_theta=float("nan")), "rope_theta=nan gives RoPE"),
        (lambda: llp_jax.build("llp"), "not a str; e.g. llp_jax.models.tiny\\('llp'\\)"),
        (lambda: llp_jax.build(3), "not a int"),
        (
            lambda: models.ModelConfig.from_any({"name": "llp", "vocab": 3}),
            "did you mean 'vocab_size'",
        ),
    ],
)
def test_model_config_mistakes_are_one_line_config_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_numpy_scalars_are_ints_and_floats():
    cfg = models.tiny("llp", d_model=np.int64(32), dropout=np.float32(0.25), shared_kv=np.bool_(1))
    assert (cfg.d_model, cfg.dropout, cfg.shared_kv) == (32, 0.25, True)
    assert [type(x) for x in (cfg.d_model, cfg.dropout, cfg.shared_kv)] == [int, float, bool]
    json.dumps(dataclasses.asdict(cfg))  # what every checkpoint's meta holds
    with pytest.raises(ConfigError, match="model.d_model=32.0 must be an int"):
        models.tiny("llp", d_model=np.float64(32))


def test_train_and_evaluate_takes_a_config_file_spec(tmp_path, corpus_file):
    spec = tmp_path / "mine.py"
    spec.write_text(
        "from llp_jax.configs import tiny\n\n\n"
        "def get_config(arg):\n"
        "    config = tiny.get_config(arg)\n"
        f"    config.data.corpus = {corpus_file!r}\n"
        "    config.model.update(seq_len=64, segment_len=16, d_model=32, num_layers=1)\n"
        "    config.train.update(batch_size=8, num_steps=2, warmup_steps=1, eval_every=1000,\n"
        "                        eval_batches=1, checkpoint_every=2)\n"
        "    return config\n"
    )
    summary = llp_jax.train_and_evaluate(f"{spec}:llp", str(tmp_path / "run"))
    assert summary["steps_run"] == 2 and np.isfinite(summary["val_loss"])
    assert configs.load("llp_jax/configs/tiny.py:s2attn").model.name == "s2attn"
    with pytest.raises(ConfigError, match="nope.py does not exist"):
        llp_jax.train_and_evaluate("nope.py:llp", str(tmp_path / "other"))
    with pytest.raises(ConfigError, match="not a ModelConfig; load a config file with"):
        llp_jax.train_and_evaluate(models.tiny("llp"), str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def test_dropout_rng_may_be_an_int_seed_and_a_step_must_be_an_int():
    model = llp_jax.build(models.tiny("llp", num_layers=1, d_model=32, dropout=0.5))
    tokens = jnp.ones((1, 128), jnp.int32)
    by_seed, by_key = model(tokens, rng=3), model(tokens, rng=jax.random.key(3))
    assert np.array_equal(np.asarray(by_seed), np.asarray(by_key))
    assert not np.allclose(np.asarray(by_seed), np.asarray(model(tokens)))
    with pytest.raises(LLPError, match="step='20' must be an int"):
        llp_jax.load_model("workdir/anything", step="20")


def test_concrete_tokens_a_jitted_function_closes_over_are_checked(model):
    tokens = jnp.full((1, 128), 5, jnp.int32)
    assert jax.jit(lambda: model(tokens))().shape == (1, 128, 256)
    bad = jnp.full((1, 128), 256, jnp.int32)
    with pytest.raises(InputError, match="token id 256"):
        jax.jit(lambda: model(bad))()


def test_llp_stream_state_must_fit_the_model_and_batch(model):
    _, state = model.stream(jnp.zeros((2, 64), jnp.int32))
    logits, _ = model.stream(jnp.ones((2, 32), jnp.int32), state)  # continues
    assert logits.shape == (2, 32, 256)
    other = llp_jax.build(models.tiny("llp", num_layers=1, d_model=16))
    for make in (lambda: model.stream(jnp.zeros((1, 64), jnp.int32), state),
                 lambda: other.stream(jnp.zeros((2, 64), jnp.int32), state),
                 lambda: model.stream(jnp.zeros((2, 64), jnp.int32), {"first": None})):  # fmt: skip
        with pytest.raises(InputError, match="stream state does not fit this model and a batch"):
            make()


@pytest.mark.parametrize("name", [n for n, cls in models.MODELS.items() if not cls.can_stream])
def test_stream_on_a_model_without_a_streaming_form_is_one_line(name):
    other = llp_jax.build(models.tiny(name, num_layers=1, d_model=32))
    with pytest.raises(ConfigError, match=f"{name} has no streaming form") as err:
        other.stream(jnp.zeros((1, other.cfg.seq_len), jnp.int32))
    assert "\n" not in str(err.value) and "model(tokens)" in str(err.value)


def test_python_api_arguments_of_the_wrong_kind_are_one_line():
    """Seeds, rng keys, configs and workdirs of the wrong type: one LLPError line naming the
    argument, not a TypeError from inside nnx, jax or os.path; integer-likes still work."""
    cfg = models.tiny("llp", num_layers=1, d_model=32, dropout=0.1)
    cases = [
        (lambda: llp_jax.build(cfg, seed="a"), "seed='a' must be a PRNG key or an int seed"),
        (lambda: llp_jax.build(cfg, seed=1.5), "seed=1.5"),
        (lambda: models.code_faithful("llp"), "not a str; e.g. llp_jax.models.tiny('llp')"),
        (lambda: llp_jax.load_model(None), "workdir=None must be a training run's folder"),
        (lambda: llp_jax.load_model(3), "workdir=3"),
        (lambda: llp_jax.load_model(""), "workdir=''"),
        # checked before any data is read (an int was "'int' object is not iterable", "no"
        # resumed the run)
        (
            lambda: llp_jax.train_and_evaluate("llp_jax/configs/tiny.py:llp", "w", devices=99),
            "devices=99: this host has 8 cpu device(s); give 1..8",
        ),
        (
            lambda: llp_jax.train_and_evaluate("llp_jax/configs/tiny.py:llp", "w", devices="cpu"),
            "devices='cpu' must be a list of jax devices",
        ),
        (
            lambda: llp_jax.train_and_evaluate("llp_jax/configs/tiny.py:llp", "w", resume="no"),
            "resume='no' must be True or False",
        ),
    ]
    for call, fragment in cases:
        with pytest.raises(LLPError) as err:
            call()
        assert fragment in str(err.value) and "\n" not in str(err.value)
    built = llp_jax.build(cfg, seed=np.int64(3))
    same = llp_jax.build(cfg, seed=3)
    tokens = jnp.zeros((1, 128), jnp.int32)
    np.testing.assert_array_equal(built(tokens), same(tokens))
    with pytest.raises(InputError, match="rng='x' must be a PRNG key or an int seed \\(or None\\)"):
        built(tokens, rng="x")
    np.testing.assert_array_equal(built(tokens, rng=np.int64(5)), built(tokens, rng=5))
    assert models.code_faithful(dataclasses.asdict(cfg)) == models.code_faithful(cfg)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_windows_a_model_cannot_run_on_are_one_line_for_every_protocol_and_decoder(name):
    """A latent model's window shorter than latent_len was a reshape or 'negative dimensions'
    error from deep inside; a fixed-window model's other windows came from the model itself."""
    model = llp_jax.build(models.tiny(name, num_layers=1, d_model=32))
    cfg, stream = model.cfg, np.arange(400) % 256
    for window in (2, cfg.latent_len - 1, cfg.seq_len // 2, cfg.seq_len, cfg.seq_len + 72):
        if window < 2:
            continue
        problem = model.window_problem(cfg, window)
        calls = [lambda p=p: llp_jax.evaluate_perplexity(model, stream, protocol=p, window=window)
                 for p in ("standard", "paper")]  # fmt: skip
        calls += [lambda m=m: llp_jax.generate(model, [[1, 2, 3]], 2, 0, window=window, method=m)
                  for m in ("auto", "recompute")]  # fmt: skip
        for call in calls:
            if problem is None:
                call()
            else:
                with pytest.raises(LLPError, match=re.escape(problem)):
                    call()
    assert model.window_problem(cfg, cfg.seq_len) is None
    if cfg.scores_latents and not model.fixed_window:
        assert "is shorter than" in model.window_problem(cfg, cfg.latent_len - 1)


@pytest.mark.parametrize("name", ["llp", "perceiver_ar", "enhanced_v3"])
def test_a_loss_on_targets_of_the_wrong_positions_is_one_line(name):
    """nll_sum takes the targets of the scored positions only: all n, or a latent model's last
    l. Given all n targets (or a float array), one line saying which, not a broadcasting error
    from inside the loss; the right ones give the loss the trainer computes."""
    cfg = models.tiny(name)
    model = llp_jax.build(cfg, seed=0)
    window = jax.random.randint(jax.random.key(0), (2, cfg.seq_len + 1), 0, cfg.vocab_size)
    inputs, start = window[:, :-1], model.loss_start(cfg.seq_len)
    targets = window[:, 1 + start :]
    assert targets.shape == (2, cfg.seq_len - start)
    loss = model.nll_sum(inputs, targets) / targets.size
    assert np.isfinite(float(loss)) and 4.0 < float(loss) < 7.0  # about log(256) at init
    if start:
        with pytest.raises(InputError, match=rf"targets must be int \[2, {cfg.latent_len}\]"):
            model.nll_sum(inputs, window[:, 1:])
    with pytest.raises(InputError, match="targets must be integer token ids"):
        model.nll_sum(inputs, targets.astype(jnp.float32))
    with pytest.raises(InputError, match="targets"):
        model.nll_sum(inputs, targets.at[0, 0].set(cfg.vocab_size))  # NaN before
    traced = jax.jit(lambda x, y: model.nll_sum(x, y))(inputs, targets)  # shapes are static
    np.testing.assert_allclose(traced, loss * targets.size, rtol=1e-5)
