"""experiments/compare.py: the --quick run end to end (table, plot, resume), the variants' shared
budget, and attention pairs counted from the models' masks against closed forms and docs/models.md."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import jax
import pytest

from llp_jax import models
from llp_jax.studies import benchmark, compare, compare_report, compare_spec, workdirs
from tests.helpers import CACHE
from tests.helpers import REPO as ROOT


# ----------------------------------------------------------------------------- the shared budget
def test_variants_share_size_budget_and_optimiser():
    spec = compare_spec.CompareSpec()
    configs = {v.label: compare_spec.experiment_config(spec, v) for v in compare_spec.VARIANTS}
    assert len(configs) == len(models.MODEL_NAMES) + 1 and "llp (code)" in configs
    shared_model = ("seq_len", "d_model", "num_layers", "num_heads", "mlp_ratio")
    for label, config in configs.items():
        for field in shared_model:
            assert config.model[field] == getattr(spec, field, config.model[field]), (label, field)
        assert config.train.batch_size == spec.batch_size
        assert config.train.num_steps == spec.num_steps
        assert config.train.learning_rate == spec.learning_rate
        assert config.train.schedule == configs["transformer"].train.schedule
        assert config.data.tokenizer == "byte"
    assert configs["llp (code)"].model.llp_separate_first_out  # the authors' knobs
    assert not configs["llp"].model.llp_separate_first_out
    assert configs["llp"].model.segment_len == spec.seq_len // spec.segments
    assert configs["perceiver_ar"].model.latent_len == spec.seq_len // spec.latent_div


def test_mixed_precision_variant_and_its_parity_line():
    spec = compare_spec.CompareSpec()
    bf16 = compare_spec.VARIANTS_BY_LABEL["llp (bf16)"]
    low, base = (
        compare_spec.experiment_config(spec, v)
        for v in (bf16, compare_spec.VARIANTS_BY_LABEL["llp"])
    )
    assert low.model.compute_dtype == "bfloat16" and base.model.compute_dtype == "float32"
    assert {k: v for k, v in low.model.items() if k != "compute_dtype"} == {
        k: v for k, v in base.model.items() if k != "compute_dtype"}  # fmt: skip
    names = {workdirs.workdir_name(label) for label in compare_spec.VARIANTS_BY_LABEL}
    assert {"llp_bf16", "llp_code", "enhanced_v1_code", "s2attn"} <= names
    assert len(names) == len(compare_spec.VARIANTS_BY_LABEL)  # one workdir per row
    row = lambda label, loss, tps: {"label": label, "validation_standard_loss": loss,  # noqa: E731
                                    "tokens_per_s": tps}  # fmt: skip
    assert compare_report.precision_lines([row("llp", 2.0, 100.0)]) == []  # no bf16 row: no line
    ((_, line),) = [
        compare_report.precision_lines([row("llp", 2.0, 100.0), row("llp (bf16)", 2.01, 80.0)])
    ]
    assert "+0.50%" in line and "within 1%: yes" in line and "0.80x" in line, line
    ((_, line),) = [
        compare_report.precision_lines([row("llp (bf16)", 2.03, 80.0), row("llp", 2.0, 100.0)])
    ]
    assert "+1.50%" in line and "within 1%: no" in line, line


def test_a_subset_of_variants_reuses_finished_and_unfinished_runs(tmp_path):
    """Which rows a comparison has does not change a run: `--variants=llp,...` after the full
    comparison reuses its llp run (it used to retrain it, deleting the finished one)."""
    full = compare_spec.CompareSpec()
    subset = dataclasses.replace(full, variants=("llp", "llp (bf16)"))
    finished, unfinished = tmp_path / "llp", tmp_path / "transformer"
    for d in (finished, unfinished):
        d.mkdir()
        (d / workdirs.SPEC_FILE).write_text(json.dumps(dataclasses.asdict(full)))
        (d / "checkpoint").write_text("step 100")
    (finished / workdirs.ROW_FILE).write_text(json.dumps({"spec": dataclasses.asdict(full)}))
    assert workdirs.finished_row(subset, str(finished)) is not None
    workdirs.clear_stale(subset, str(unfinished))  # resumes: its checkpoint stays
    assert (unfinished / "checkpoint").exists()
    other = dataclasses.replace(subset, num_steps=full.num_steps + 1)
    assert workdirs.finished_row(other, str(finished)) is None  # other settings: another run
    workdirs.clear_stale(other, str(unfinished))
    assert not unfinished.exists()


def test_default_budget_tokens():
    spec = compare_spec.CompareSpec()
    assert set(spec.variants) == {v.label for v in compare_spec.VARIANTS}
    assert spec.num_steps * spec.batch_size * spec.seq_len >= 500_000  # not a toy run


# ----------------------------------------------------------------------------- attention pairs
def _exact_pairs(cfg: models.ModelConfig) -> int:
    """Closed forms of the masks' pair counts (per window, all layers, per head)."""
    n, L, l = cfg.seq_len, cfg.num_layers, cfg.latent_len
    m = n - l
    tri = lambda x: x * (x + 1) // 2
    bidir = cfg.history_mask == "bidirectional"
    hist = lambda x: x * x if bidir else tri(x)
    if cfg.name == "transformer":
        return L * tri(n)
    if cfg.name == "perceiver_ar":
        return l * m + tri(l) + (L - 1) * tri(l)
    if cfg.name == "enhanced_v1":
        return L * (l * m + tri(l) + hist(m))
    if cfg.name == "enhanced_v2":
        h = m // cfg.history_segments
        return L * (l * m + tri(l) + cfg.history_segments * hist(h))
    if cfg.name == "enhanced_v3":
        c = cfg.compressed
        return (l * m + tri(l) + hist(m)) + (L - 1) * (l * c + tri(l) + hist(c))
    if cfg.name == "llp":
        s = cfg.segment_len
        return L * ((n // s) * tri(s) + (n - s) * s)
    if cfg.name == "s2attn":
        G = cfg.group
        plain = (n // G) * tri(G)
        shifted = 2 * tri(G // 2) + (n // G - 1) * tri(G)
        return L * (plain + shifted) // 2
    raise AssertionError(cfg.name)


def _models_md_formula(cfg: models.ModelConfig) -> float:
    """docs/models.md / README's cost column (bidirectional history, as the authors' code)."""
    n, L, l = cfg.seq_len, cfg.num_layers, cfg.latent_len
    m, c, s, G = n - l, cfg.compressed, cfg.segment_len, cfg.group
    return {
        "transformer": L * n * n / 2,
        "perceiver_ar": l * n + (L - 1) * l * l,
        "enhanced_v1": L * (l * n + m * m),
        "enhanced_v2": L * (l * n + m * m / cfg.history_segments),
        "enhanced_v3": l * n + m * m + (L - 1) * (c + l) ** 2,
        "llp": L * s * (2 * n - s),
        "s2attn": L * n * G / 2,
    }[cfg.name]


@pytest.mark.parametrize("name", models.MODEL_NAMES)
@pytest.mark.parametrize("faithful", [False, True], ids=["clean", "code"])
def test_attention_pairs_from_masks_match_closed_forms(name, faithful):
    cfg = models.tiny(name, faithful=faithful, num_layers=3)
    assert benchmark.attention_pairs(cfg) == _exact_pairs(cfg)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_attention_pairs_against_models_md(name):
    """docs/models.md counts the latent block and llp's current segment as full squares (an upper
    bound of the causal count); with the code's bidirectional history the rest is exact."""
    cfg = models.tiny(name, faithful=True, seq_len=256, num_layers=3)
    exact, formula = benchmark.attention_pairs(cfg), _models_md_formula(cfg)
    assert 0.99 * exact <= formula <= 1.4 * exact, (exact, formula)


# ----------------------------------------------------------------------------- quick run
@pytest.mark.slow
def test_quick_compare_writes_table_and_plot(tmp_path):
    """`python -m experiments.compare --quick` end to end, then a rerun reuses every row."""
    workroot, out = tmp_path / "work", tmp_path / "results" / "compare.md"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    cmd = [sys.executable, "-m", "experiments.compare", "--quick", f"--workroot={workroot}",
           f"--out={out}", f"--compilation_cache={CACHE}"]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    for column in ("params", "attention pairs", "val ppl", "test ppl", "(paper)", "tokens/s",
                   "peak MiB"):  # fmt: skip
        assert column in header
    rows = [line for line in text.splitlines() if line.startswith(("| transformer", "| llp"))]
    assert len(rows) == 2 and all("| - |" not in r for r in rows), rows
    png = tmp_path / "results" / "compare.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "compare.png" in text and "--quick" in text
    assert (workroot / ".gitignore").read_text().strip().endswith("*")
    # Resume: the same spec reuses the finished rows without training.
    logs = []
    rows = compare.run_comparison(
        compare_spec.QUICK, str(workroot), devices=jax.devices()[:1], log=logs.append
    )
    assert all("reusing" in line for line in logs) and len(rows) == 2
    other = dataclasses.replace(compare_spec.QUICK, num_steps=compare_spec.QUICK.num_steps + 1)
    assert workdirs.finished_row(other, rows[0]["workdir"]) is None  # a changed spec retrains
