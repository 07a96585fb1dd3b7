"""The study (llp_jax/studies/study.py): what it measures can fail, its runs are what it says,
and one chunk runs end to end through the real CLI, resumes from its cache and writes the report.

The context curve is checked against what LLP's masks imply: a segment's output depends on at
most L * k segments before it, so with c >= L * k segments of context the loss equals the whole
stream's, and with fewer it does not."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from llp_jax import models
from llp_jax.studies import compare_spec, context_use, study_spec, workdirs
from tests.helpers import CACHE, REPO


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
    spec = study_spec.SMALL
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
    assert {k.kind for k in keys} == set(study_spec.KINDS)


@pytest.mark.slow
def test_a_study_chunk_through_the_cli_resumes_and_reports(tmp_path):
    cmd = [sys.executable, "-m", "experiments.compare", "--study=quick", "--variants=llp",
           f"--workroot={tmp_path / 'work'}", f"--out={tmp_path / 'out' / 'study.md'}",
           f"--compilation_cache={CACHE}"]  # fmt: skip
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (first.stdout + first.stderr).count(
        "--- RunKey"
    ) == 8  # 2 seeds x (bytes, SentencePiece, L = 1, equal targets: l / n as long)
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
    shutil.rmtree(tmp_path / "work")  # the checkpoints gone: study.json (the ledger) still has them
    ledger = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert ledger.returncode == 0 and "--- RunKey" not in ledger.stdout, ledger.stderr[-2000:]
    assert len(json.loads((tmp_path / "out" / "study.json").read_text())["rows"]) == 8
    report_only = [a for a in cmd if a != "--variants=llp"] + ["--nostudy_train"]
    done = subprocess.run(report_only, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--- RunKey" not in done.stdout  # the others stay untrained
    assert len(json.loads((tmp_path / "out" / "study.json").read_text())["rows"]) == 8
    for flags in (["--variants=nope"], ["--study=quick", "--variants=nope"], ["--study=big"]):
        bad = subprocess.run(cmd[:3] + flags, cwd=REPO, capture_output=True, text=True)
        assert bad.returncode != 0, flags
        assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]  # one line
        assert bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_an_unfinished_run_of_the_same_spec_is_kept_to_resume_and_any_other_is_cleared(tmp_path):
    spec = compare_spec.QUICK
    workdir = tmp_path / "run"
    (workdir / "checkpoints" / "7").mkdir(parents=True)
    (workdir / workdirs.SPEC_FILE).write_text(json.dumps(dataclasses.asdict(spec)))
    workdirs.clear_stale(spec, str(workdir))
    assert (workdir / "checkpoints" / "7").is_dir()  # same spec, no row: resumes
    workdirs.clear_stale(dataclasses.replace(spec, num_steps=spec.num_steps + 1), str(workdir))
    assert not workdir.exists()  # another spec: never mixed
    (workdir / "checkpoints").mkdir(parents=True)
    workdirs.clear_stale(spec, str(workdir))
    assert not workdir.exists()  # no spec recorded: of unknown origin


def test_budgets_scale_steps_warmup_and_evaluation_alike():
    spec = study_spec.SMALL
    b = spec.base
    for key, factor in [(study_spec.RunKey("llp", 0, "targets_short"), 1 / b.latent_div),
                        (study_spec.RunKey("perceiver_ar", 0, "targets"), b.latent_div),
                        (study_spec.RunKey("perceiver_ar", 0, "targets_short"), 1),
                        (study_spec.RunKey("llp", 0, "targets"), 1),
                        (study_spec.RunKey("transformer", 0, "long"), spec.long_factor)]:  # fmt: skip
        run = spec.run_spec(key)
        assert run.num_steps == round(b.num_steps * factor), key
        assert run.warmup_steps == round(b.warmup_steps * factor), key
    # equal targets: the full-scoring models' short runs see the latent models' loss targets
    latent = compare_spec.model_config(b, compare_spec.VARIANTS_BY_LABEL["perceiver_ar"]).scored_len
    short = spec.run_spec(study_spec.RunKey("llp", 0, "targets_short"))
    assert short.num_steps * b.seq_len == b.num_steps * latent


@pytest.mark.slow
def test_sigterm_stops_a_study_with_the_run_saved_and_no_row(tmp_path):
    """A preempted study must not record its half-trained run as finished (nor go on to the next
    run): exit 0, one line naming the saved step, the checkpoint kept for the rerun."""
    out = tmp_path / "out" / "study.md"
    cmd = [sys.executable, "-m", "experiments.compare", "--study=quick", "--variants=llp",
           "--study_runs=tokens", "--num_steps=100000", f"--workroot={tmp_path / 'work'}",
           f"--out={out}", f"--compilation_cache={CACHE}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    workdir = tmp_path / "work" / study_spec.RunKey("llp", 0).dirname
    deadline = time.time() + 600
    while (
        not (workdir / "metrics.jsonl").exists()
        or "train/loss" not in (workdir / "metrics.jsonl").read_text()
    ):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert "SIGTERM: saved llp at step" in stderr and "Traceback" not in stderr
    assert "--- RunKey" not in stdout.split("SIGTERM")[-1]  # no next run started
    assert not (workdir / workdirs.ROW_FILE).exists()
    assert os.listdir(workdir / "checkpoints")
    assert (
        not out.with_suffix(".json").exists()
        or not json.loads(out.with_suffix(".json").read_text())["rows"]
    )


def _rows(label, values):
    return [{"key": {"seed": s, "label": label}, "validation_standard_bits_per_byte": v}
            for s, v in enumerate(values)]  # fmt: skip


def test_claims_are_settled_by_seed_pairs_not_by_the_spread_of_levels():
    from scipy import stats

    from llp_jax.studies import study_report, study_rows

    # Each seed moves both models alike (a shared data order): the levels spread by 0.1, the
    # per-seed gap is a steady 0.03 -> settled, which comparing the spreads alone could not say.
    llp, transformer = [2.40, 2.50, 2.60], [2.43, 2.53, 2.635]
    mean, std, k = study_rows.paired(_rows("llp", llp), _rows("transformer", transformer))
    assert (mean, k) == (pytest.approx(-0.031667, abs=1e-5), 3)
    p = study_rows.paired_p(mean, std, k)
    assert p == pytest.approx(stats.ttest_rel(llp, transformer).pvalue)
    groups = {"llp": _rows("llp", llp), "transformer": _rows("transformer", transformer)}
    (line,) = [x for x in study_report.claims(groups) if "llp < transformer" in x]
    assert "agrees" in line and "not resolved" not in line
    noisy = {"llp": _rows("llp", [2.40, 2.60, 2.50]), "transformer": _rows("transformer", llp)}
    (line,) = [x for x in study_report.claims(noisy) if "llp < transformer" in x]
    assert "not resolved" in line
