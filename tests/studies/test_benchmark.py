"""experiments/benchmark.py on a tiny grid: the table, the exponents, the targets' bookkeeping."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from llp_jax.studies import benchmark, benchmark_report
from tests.helpers import CACHE
from tests.helpers import REPO as ROOT


def test_fit_exponent_recovers_a_power_law():
    ns = [1024, 2048, 4096, 8192]
    assert benchmark_report.fit_exponent(ns, [3e-9 * n**2 for n in ns]) == pytest.approx(2.0)
    assert benchmark_report.fit_exponent(ns, [0.5] * 4) == pytest.approx(0.0, abs=1e-9)
    assert benchmark_report.fit_exponent([1024], [1.0]) is None


def test_targets_bookkeeping():
    rows = [
        {"model": "llp", "n": 2048, "step_s": 1.0, "train_mib": 100.0},
        {"model": "llp", "n": 16384, "step_s": 1.2, "train_mib": 110.0},
        {"model": "transformer", "n": 16384, "step_s": 6.0, "train_mib": 9000.0},
    ]
    got = {d: (round(v, 2), ok) for d, v, _, ok in benchmark_report.check_targets(rows)}
    assert list(got.values()) == [(1.2, True), (5.0, True), (1.1, True)]
    rows[1]["step_s"] = 2.0
    rows.pop()  # transformer not run: unknown, not failed
    got = [ok for *_, ok in benchmark_report.check_targets(rows)]
    assert got == [False, None, True]


def test_llp_memory_does_not_grow_with_n_at_equal_tokens():
    """The compiled plan alone (nothing run: max_gib=0): llp's peak is flat in n, the dense
    transformer's grows."""
    spec = benchmark.BenchSpec(
        tokens_per_step=1024, d_model=32, num_layers=2, num_heads=2, segment_len=64, max_gib=0
    )
    llp = [benchmark.measure(spec, "llp", n)["train_mib"] for n in (256, 1024)]
    dense = [benchmark.measure(spec, "transformer", n)["train_mib"] for n in (256, 1024)]
    assert llp[1] <= 1.1 * llp[0]
    assert dense[1] > 1.5 * dense[0]


@pytest.mark.slow
def test_tiny_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "bench.md"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    cmd = [sys.executable, "-m", "experiments.benchmark", "--models=transformer,llp",
           "--seq_lens=64,128", "--tokens_per_step=256", "--d_model=32", "--num_layers=1",
           "--segment_len=32", "--steps=2", f"--out={out}", f"--compilation_cache={CACHE}"]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    points = [
        line for line in text.splitlines() if re.match(r"\| (transformer|llp) \| \d+ \| \d", line)
    ]
    assert len(points) == 4 and all(" - |" not in p for p in points), points
    exponents = [
        line
        for line in text.splitlines()
        if re.match(r"\| (transformer|llp) \| -?\d\.\d\d \|$", line)
    ]
    assert len(exponents) == 2, text
    assert "train step (ms)" in text and "Fitted scaling exponent" in text
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
