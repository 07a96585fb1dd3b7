"""A diverged but finite run (a learning rate far too high, no clipping): its losses are huge
numbers, not NaN, so it trains to the end and is evaluated. Every perplexity reported is exp of
the loss reported beside it, `inf` past float64's range, never a made-up cap and never an
OverflowError traceback; tables show such figures in e-notation."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx

import llp_jax
from llp_jax import strict_json
from llp_jax.evaluation import runner
from llp_jax.models.losses import perplexity, perplexity_text
from llp_jax.storage import read_jsonl
from tests.helpers.strict import strict
from tests.reliability.conftest import tiny_args


def test_perplexity_of_any_loss():
    assert perplexity(0.0) == 1.0 and perplexity(60.0) == math.exp(60.0)
    assert perplexity(709.0) == math.exp(709.0) and perplexity(710.0) == math.inf
    assert perplexity(math.inf) == math.inf and math.isnan(perplexity(math.nan))
    assert [perplexity_text(x) for x in (33.2283, 1e9, math.exp(255), math.inf, None)] == [
        "33.228", "1.000e+09", "5.560e+110", "inf", "-"]  # fmt: skip


def test_a_diverged_run_reports_true_figures_through_the_programs(server, tmp_path, corpus_file):
    workdir = tmp_path / "diverged"
    args = tiny_args(workdir, corpus_file, train__learning_rate=100, train__clip_norm=0,
                     train__warmup_steps=1, train__eval_every=4)  # fmt: skip
    result = server.run("train", *args)
    assert result.rc == 0, str(result)
    summary_text = (workdir / "summary.json").read_text()
    # Strict JSON (JSON.parse, Go): inf is the string "inf", never the bare token Infinity.
    assert strict(summary_text)["val_ppl"] == "inf", summary_text
    summary = strict_json.loads(summary_text)
    assert summary["val_loss"] > 710, summary  # the case: exp overflows a float64
    assert summary["val_ppl"] == math.inf and "validation perplexity inf" in result.stdout
    rows = [r for r in read_jsonl(workdir / "metrics.jsonl") if "val/loss" in r]
    assert rows and all(r["val/ppl"] == perplexity(r["val/loss"]) for r in rows), rows

    result = server.run("evaluate", f"--workdir={workdir}", "--protocols=standard,stream")
    assert result.rc == 0, str(result)
    report_text = (workdir / "eval_validation.json").read_text()
    assert strict(report_text)["results"][0]["perplexity"] == "inf", report_text
    report = strict_json.loads(report_text)
    for r in report["results"]:
        assert r["loss"] > 710 and r["perplexity"] == r["word_perplexity"] == math.inf, r
        assert f"| {r['loss']:.4f} | inf |" in result.stdout, result.stdout


def test_a_large_finite_perplexity_is_exp_of_its_loss(trained):
    """A model whose head is scaled up (logits x1000): loss in the hundreds of nats. The token
    perplexity is the true exp(loss) where it fits a float64, the word perplexity (per word: a
    larger exponent) inf where it does not, and the table prints them in e-notation."""
    loaded = llp_jax.load_model(trained["dir"])
    graphdef, state = nnx.split(loaded.model)
    vocab = loaded.config.vocab_size
    state = jax.tree.map(lambda x: x * 300.0 if x.shape[-1:] == (vocab,) else x, state)
    text = "It is a truth universally acknowledged, that a single man in possession of a good " * 4
    tokens = np.asarray(loaded.tokenizer.encode(text))
    result = llp_jax.evaluate_perplexity(nnx.merge(graphdef, state), tokens,
                                         num_words=len(text.split()))  # fmt: skip
    assert 50 < result.loss < 700, result.loss
    assert result.perplexity == math.exp(result.loss) and result.word_perplexity == math.inf
    table = runner.format_table([result])
    assert f"| {perplexity_text(result.perplexity)} |" in table and "e+" in table, table
