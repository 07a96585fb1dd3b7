"""Loading workdirs: parameters round-trip, one-line errors for a missing checkpoint or a different
model config, and the evaluate / sample entry points on a checkpoint written by the trainer."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.configs import tiny
from llp_jax.errors import LLPError
from llp_jax.evaluation import checkpoints, protocol_plan, runner
from llp_jax.evaluation.errors import EvaluationError
from llp_jax.storage import Checkpointer, CheckpointNotFoundError
from tests.helpers import REPO


def _save_fresh(workdir, cfg: models.ModelConfig, step: int = 3):
    model = models.build(cfg, seed=5)
    with Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False) as ckpt:
        ckpt.save(
            step,
            {"params": nnx.split(model)[1]},
            meta={"model": models.config.as_dict(cfg)},
            force=True,
        )
    return model


def test_params_round_trip(tmp_path):
    cfg = models.tiny("perceiver_ar", faithful=True).replace(dropout=0.0)
    saved = _save_fresh(str(tmp_path), cfg)
    loaded = checkpoints.load_model(str(tmp_path))
    assert (loaded.step, loaded.config) == (3, cfg)
    tokens = np.arange(2 * 128).reshape(2, 128) % 256
    np.testing.assert_array_equal(np.asarray(loaded.model(tokens)), np.asarray(saved(tokens)))


def test_no_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as e:
        checkpoints.load_model(str(tmp_path / "nothing_here"))
    assert isinstance(e.value, LLPError) and "\n" not in str(e.value)
    assert "no checkpoint in" in str(e.value)


def test_a_different_model_config_is_a_one_line_error(tmp_path):
    cfg = models.tiny("llp")
    _save_fresh(str(tmp_path), cfg)
    with pytest.raises(checkpoints.ConfigMismatchError) as e:
        checkpoints.load_model(str(tmp_path), model_config=cfg.replace(num_layers=3, d_model=32))
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in msg
    assert "num_layers=2 (checkpoint) vs 3 (config)" in msg and "d_model=64" in msg
    # Execution knobs may differ; vocab_size 0 means "the checkpoint's".
    ok = checkpoints.load_model(
        str(tmp_path),
        model_config=dict(
            models.config.as_dict(cfg), vocab_size=0, remat="full", attention_impl="reference"
        ),
    )
    assert (ok.config.remat, ok.config.attention_impl) == ("full", "reference")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step tiny LLP trained by the real trainer on a small text file."""
    from llp_jax.studies import train_and_evaluate

    root = tmp_path_factory.mktemp("run")
    rng = random.Random(0)
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "a",
        "mat",
        "and",
        "a",
        "dog",
        "ran",
        "far",
        "away",
        "to",
        "the",
        "house",
        "by",
        "the",
        "river",
    ]
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choices(words, k=12)) for _ in range(800)) + "\n")
    config = tiny.get_config("llp")
    config.data.corpus = str(corpus)
    config.train.update(num_steps=2, eval_every=2, checkpoint_every=2, log_every=1, eval_batches=1)
    config.sample.num_tokens = 4
    workdir = str(root / "wd")
    train_and_evaluate(config, workdir)
    return config, workdir


def test_evaluate_and_sample_a_trained_workdir(trained):
    config, workdir = trained
    setup = runner.setup(workdir, config)
    assert setup.source.startswith("checkpoint step 2")
    results = runner.evaluate(setup, protocols=["standard", "stream"], max_tokens=700)
    for r in results:
        assert r.num_scored == 699 and np.isfinite(r.perplexity)
        assert r.bits_per_byte is not None and r.word_perplexity is not None
    text = runner.sample(setup, "the cat", max_new_tokens=12, temperature=0.0)[0]
    assert text.startswith("the cat")
    path = os.path.join(workdir, "eval.json")
    runner.write_json(path, setup, "validation", results)
    with open(path) as f:
        assert [r["protocol"] for r in json.load(f)["results"]] == ["standard", "stream"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_tokens=-3), "max_tokens=-3 must be >= 0"),  # was: every token, silently
    (dict(batch_size=0), "batch_size=0 must be >= 1"),
    (dict(stride=1.5), "stride=1.5 must be an int"),
    (dict(protocols=["standrd"]), r"protocols: \['standrd'\] unknown"),
    (dict(protocols="standard,papr"), r"protocols: \['papr'\] unknown"),
])  # fmt: skip
def test_evaluate_from_python_checks_its_arguments_as_the_flags_are(trained, kwargs, message):
    """runner.evaluate (the notebook's call) gets the one-line checks experiments.evaluate's
    flags get, named without '--', before anything runs."""
    config, workdir = trained
    setup = runner.setup(workdir, config)
    with pytest.raises(EvaluationError, match=message) as raised:
        runner.evaluate(setup, **kwargs)
    assert "--" not in str(raised.value)


def test_evaluate_takes_protocols_as_the_flag_spells_them_and_sample_wants_text(trained):
    """A string of protocols is one name or several with commas, as --protocols takes them
    (iterated, 'standard' was its letters: "protocol='s' must be one of ..."); a list of
    prompts is one line (an AttributeError from the tokenizer before), and so is every sampling
    argument out of its range, named as sample() names it."""
    config, workdir = trained
    setup = runner.setup(workdir, config)
    for spelled in ("standard", "standard,stream", "standard, stream"):
        results = runner.evaluate(setup, protocols=spelled, max_tokens=300)
        assert [r.protocol for r in results] == spelled.replace(" ", "").split(",")
    with pytest.raises(EvaluationError, match="prompt must be text .*not a list"):
        runner.sample(setup, ["the cat", "a dog"], max_new_tokens=2)
    for kwargs, message in (  # an empty list, a raw TypeError from JAX, a wrong name, before
        (dict(num_samples=0), "num_samples=0 must be >= 1"),
        (dict(seed="a"), "seed='a' must be an int"),
        (dict(max_new_tokens=True), "max_new_tokens=True must be an int"),
    ):
        with pytest.raises(EvaluationError, match=message):
            runner.sample(setup, "the cat", **{"max_new_tokens": 2, **kwargs})


def test_every_protocol_is_checked_before_any_runs(trained, monkeypatch):
    """A window one protocol cannot use (stream: not a multiple of the segment) fails at once,
    not after the protocols before it have scored the whole split; a text shorter than a paper
    window leaves the paper protocol out, unless it was asked for."""
    config, workdir = trained
    setup = runner.setup(workdir, config)
    ran = []
    real = runner.perplexity.evaluate_perplexity
    monkeypatch.setattr(runner.perplexity, "evaluate_perplexity",
                        lambda *a, **k: ran.append(k["protocol"]) or real(*a, **k))  # fmt: skip
    segment = setup.config.segment_len
    with pytest.raises(EvaluationError, match=f"must be a multiple of segment_len={segment}"):
        runner.evaluate(setup, window=3 * segment + 1, max_tokens=700)
    assert ran == []
    n = setup.config.seq_len
    assert protocol_plan.plan_protocols(setup, "validation", max_tokens=n)[0] == [
        "standard",
        "stream",
    ]
    results = runner.evaluate(setup, max_tokens=n)
    assert [r.protocol for r in results] == ran == ["standard", "stream"]
    assert protocol_plan.plan_protocols(setup, "validation", max_tokens=n + 1) == (
        ["standard", "paper", "stream"], [])  # fmt: skip
    with pytest.raises(EvaluationError, match=f"fewer than one window of n \\+ 1 = {n + 1}"):
        runner.evaluate(setup, protocols=["standard", "paper"], max_tokens=n)
    assert ran == ["standard", "stream"]  # the paper protocol, named, failed before any ran


def test_entry_points(trained, tmp_path):
    config, workdir = trained
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    common = ["--config=llp_jax/configs/tiny.py:llp", f"--config.data.corpus={config.data.corpus}"]
    run = lambda mod, *args: subprocess.run(
        [sys.executable, "-m", mod, *common, *args],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = tmp_path / "e.json"
    ev = run(
        "experiments.evaluate",
        f"--workdir={workdir}",
        "--protocols=standard",
        "--max_tokens=300",
        f"--out={out}",
    )
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "| standard | 128 |" in ev.stdout and json.loads(out.read_text())["results"]
    sm = run(
        "experiments.sample",
        f"--workdir={workdir}",
        "--prompt=the dog",
        "--max_new_tokens=5",
        "--temperature=0",
    )
    assert sm.returncode == 0 and "the dog" in sm.stdout, sm.stderr[-2000:]
    bad = run("experiments.evaluate", f"--workdir={tmp_path / 'empty'}")
    assert bad.returncode != 0 and "no checkpoint in" in bad.stderr
    wrong = run("experiments.evaluate", f"--workdir={workdir}", "--config.model.num_layers=3")
    assert wrong.returncode != 0 and "num_layers=2 (checkpoint) vs 3 (config)" in wrong.stderr
    assert jax.devices()  # (the subprocesses ran on their own; this process is untouched)


def test_a_loaded_model_carries_its_tokenizer_from_text_to_text(trained, tmp_path):
    """From Python, text in and text out with only the top-level API: load_model(workdir)
    .tokenizer encodes a prompt and decodes what generate made, as `experiments.sample` does."""
    import llp_jax

    config, workdir = trained
    loaded = llp_jax.load_model(workdir)
    ids = loaded.tokenizer.encode("the cat")
    out = llp_jax.generate(loaded, [ids], 12, 0, temperature=0.0)
    setup = runner.setup(workdir, config)
    assert (
        loaded.tokenizer.decode(out[0])
        == runner.sample(setup, "the cat", max_new_tokens=12, temperature=0.0)[0]
    )
    text = "the dog ran far away to the river by the house\n" * 20
    ppl = llp_jax.evaluate_perplexity(loaded, loaded.tokenizer.encode(text)).perplexity
    assert np.isfinite(ppl) and ppl > 1.0
    # A workdir without a data record: the run's data config names the tokenizer.
    old = checkpoints.LoadedModel(
        loaded.model, loaded.config, 2, str(tmp_path), {"tokenizer": "byte"}
    )
    assert old.tokenizer.decode(old.tokenizer.encode("héllo")) == "héllo"
    spm = checkpoints.LoadedModel(
        loaded.model, loaded.config, 2, str(tmp_path), {"tokenizer": "sentencepiece"}
    )
    with pytest.raises(checkpoints.EvaluationError, match="keeps no tokenizer"):
        _ = spm.tokenizer
