"""The study (llp_jax/studies/study.py): what it measures can fail, its runs are what it says,
and one chunk runs end to end through the real CLI, resumes from its cache and writes the report.

The context curve is checked against what LLP's masks imply: a segment's output depends on at
most L * k segments before it, so with c >= L * k segments of context the loss equals the whole
stream's, and with fewer it does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from llp_jax import models
from llp_jax.studies import context_use, study
from tests.helpers import REPO


def _llp(L: int, k: int = 1):
    cfg = models.tiny("llp").replace(seq_len=64, segment_len=8, num_layers=L, prev_segments=k,
                                     vocab_size=64, d_model=32, num_heads=4, dropout=0.0)  # fmt: skip
    return models.build(cfg.validate(), seed=3)


@pytest.mark.parametrize("L,k", [(2, 1), (1, 2), (3, 1)])
def test_context_curve_reaches_the_stream_exactly_at_the_receptive_field(L, k):
    tokens = np.random.default_rng(0).integers(0, 64, 1200).astype(np.int32)
    reach = L * k
    curve = context_use.context_curve(_llp(L, k), tokens, segment=8, contexts=range(reach + 2),
                                      max_context=reach + 1, num_targets=40, stream=True)  # fmt: skip
    for c in range(reach + 2):
        if c >= reach:
            assert curve[str(c)] == pytest.approx(curve["stream"], abs=2e-6), c
        else:
            assert abs(curve[str(c)] - curve["stream"]) > 1e-5, c  # context it cannot see


def test_position_losses_cover_what_the_model_scores():
    tokens = np.random.default_rng(1).integers(0, 64, 700).astype(np.int32)
    llp = context_use.position_losses(_llp(2), tokens, window=64, max_windows=5)
    assert not np.isnan(llp).any() and llp.shape == (64,)
    cfg = models.tiny("perceiver_ar").replace(seq_len=64, latent_len=16, vocab_size=64,
                                              d_model=32, num_heads=4).validate()  # fmt: skip
    par = context_use.position_losses(models.build(cfg, seed=0), tokens, window=64)
    assert np.isnan(par[:48]).all() and not np.isnan(par[48:]).any()
    assert context_use.bucket_means(par, 16) == [None, None, None, pytest.approx(par[48:].mean())]


def test_the_small_study_runs_what_it_promises():
    spec = study.SMALL
    keys = spec.runs()
    labels = {k.label for k in keys if k.budget == "tokens" and k.tokenizer == "byte"}
    assert labels >= set(models.MODEL_NAMES) and len(spec.seeds) >= 3
    assert {"perceiver_ar (code)", "enhanced_v1 (code)", "enhanced_v2 (code)",
            "enhanced_v3 (code)", "llp (code)"} <= labels  # fmt: skip
    for key in keys:
        run = spec.run_spec(key)
        if key.budget == "targets":  # n / l times the steps: as many loss targets
            assert run.num_steps == spec.base.num_steps * spec.base.latent_div
        if key.tokenizer == "sentencepiece":
            assert run.tokenizer == "sentencepiece"
    assert len({k.dirname for k in keys}) == len(keys)  # one workdir per run
    assert {k.kind for k in keys} == set(study.KINDS)


@pytest.mark.slow
def test_a_study_chunk_through_the_cli_resumes_and_reports(tmp_path):
    cmd = [sys.executable, "-m", "experiments.compare", "--study=quick", "--variants=llp",
           f"--workroot={tmp_path / 'work'}", f"--out={tmp_path / 'out' / 'study.md'}",
           "--compilation_cache="]  # fmt: skip
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (first.stdout + first.stderr).count(
        "--- RunKey"
    ) == 6  # 2 seeds x (bytes, SentencePiece, L = 1)
    report = (tmp_path / "out" / "study.md").read_text()
    assert (
        "## Context use" in report and "llp L=1" in report and "## Bytes vs SentencePiece" in report
    )
    rows = json.loads((tmp_path / "out" / "study.json").read_text())["rows"]
    assert {r["key"]["seed"] for r in rows} == {0, 1}
    for name in ("study_curves.png", "study_positions.png", "study_context.png"):
        assert os.path.getsize(tmp_path / "out" / name) > 10_000
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "--- RunKey" not in again.stderr + again.stdout  # cached
    report_only = [a for a in cmd if a != "--variants=llp"] + ["--nostudy_train"]
    done = subprocess.run(report_only, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--- RunKey" not in done.stdout  # the others stay untrained
    assert len(json.loads((tmp_path / "out" / "study.json").read_text())["rows"]) == 6
    for flags in (["--variants=nope"], ["--study=quick", "--variants=nope"], ["--study=big"]):
        bad = subprocess.run(cmd[:3] + flags, cwd=REPO, capture_output=True, text=True)
        assert bad.returncode != 0, flags
        assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]  # one line
        assert bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
