"""The step benchmark's XLA-flag sweep: our variant in worker processes (tools/our_step.py), one
under the default flags (the control) and one per flag set, timed in the same rounds."""

from __future__ import annotations

import jax
import pytest

from llp_jax.studies import step_benchmark as sb
from llp_jax.studies import step_report, step_workers

# PerceiverAR at n = 64, batch 1: the smallest real step of the benchmark's config.
SPEC = sb.StepSpec(variants=("perceiver_ar",), seq_len=64, batch=1, rounds=2,
                   flag_variants=("perceiver_ar",))  # fmt: skip
FLAGS = "--xla_cpu_enable_fast_min_max=false"


def test_a_flags_worker_runs_the_step_under_its_flags():
    worker = step_workers.FlagsWorker(SPEC, "perceiver_ar", FLAGS)
    try:
        # Its environment has them (that XLA reads them: the unknown-flag case in
        # tests/reliability/test_bad_flags.py).
        assert FLAGS in worker.banner
        assert worker.timed() > 0
        # Its step is ours at the same spec (n = 64, batch 1): the same loss as in-process.
        worker.proc.stdin.write("step\n")
        worker.proc.stdin.flush()
        _, their_loss = worker.proc.stdout.readline().split()
    finally:
        worker.close()
    ours = sb.Ours(SPEC, "perceiver_ar")  # its warm-up ran two steps, as the worker's did
    for _ in range(2):
        loss = float(jax.block_until_ready(ours.step()))
    assert abs(float(their_loss) - loss) < 1e-4 * abs(loss)


@pytest.mark.slow
def test_the_sweep_times_control_and_flags_in_the_same_rounds():
    spec = sb.StepSpec(**{**SPEC.__dict__, "flag_sets": (FLAGS,)})
    result = sb.run(spec, log=lambda _: None)
    rows = {r["variant"]: r for r in result["rows"]}
    control, flagged = sb.flag_label("perceiver_ar", ""), sb.flag_label("perceiver_ar", FLAGS)
    assert {"perceiver_ar", control, flagged} <= rows.keys()
    assert rows[flagged]["gflop"] == rows["perceiver_ar"]["gflop"]  # the same step's FLOPs
    assert all(len(result["times"][k]) == spec.rounds for k in (control, flagged))
    ((label, ratio),) = step_report.flag_ratios(result)
    assert label == flagged and ratio > 0
    text = step_report.markdown(result, "cmd", 1.0)
    assert f"{flagged}: **{ratio:.2f}x**" in text
    # The peak with attention's batched blocks in: every row of ours, from its own mix.
    for label in ("perceiver_ar", control, flagged):
        row = rows[label]
        expected = row["gflops"] / row["peak_all"]["numpy_all_gflops"]
        assert abs(row["util_numpy_all"] - expected) < 1e-9 * expected
    assert any(len(s["shape"]) == 4 for s in result["peak"]["shapes"])  # batched shapes timed
    assert f"{100 * rows['perceiver_ar']['util_xla_all']:.0f}%" in text


def test_model_flops_are_the_models_not_the_bfloat16_forms():
    """The bfloat16 CPU forms add an implementation matmul (RoPE's pair rotation); model FLOPs
    and the peak's shapes come from the float32 twin, so both variants count the same."""
    spec = sb.StepSpec(variants=("llp", "llp_bf16"), seq_len=64, batch=1, rounds=1)
    f32, bf16 = sb.Ours(spec, "llp"), sb.Ours(spec, "llp_bf16")
    assert bf16.shapes == f32.shapes and bf16.batched == f32.batched
    assert sum(bf16.batched.values()) > 0  # attention's block matmuls, apart
    assert bf16.flops == f32.flops > 0


@pytest.mark.parametrize("units", ["native", "float32"])
def test_a_bfloat16_step_is_measured_against_bfloat16_dots_where_the_cpu_has_them(
    monkeypatch, units
):
    """On a CPU with bfloat16 units (forced here either way), the bfloat16 variant's utilisation
    is also stated against XLA's bfloat16 dots on the same shapes; without them its matmuls run
    in float32, so the float32 peak is its ceiling and no bfloat16 peak is measured."""
    monkeypatch.setenv("LLP_JAX_CPU_BF16", units)
    peak = sb.step_profile.matmul_peak
    monkeypatch.setattr(sb.step_profile, "matmul_peak", lambda *a, **k: peak(*a, **k, min_s=0.01))
    spec = sb.StepSpec(variants=("llp", "llp_bf16"), seq_len=64, batch=1, rounds=1)
    result = sb.run(spec, log=lambda _: None)
    rows = {r["variant"]: r for r in result["rows"]}
    text = step_report.markdown(result, "cmd", 1.0)
    assert "util_bf16" not in rows["llp"]
    if units == "float32":
        assert "xla_bf16_gflops" not in result["peak"] and "util_bf16" not in rows["llp_bf16"]
        assert "bfloat16 matmul peak" not in text
        return
    row = rows["llp_bf16"]
    mix = sb.step_profile.mix_peak(result["peak"], sb.Ours(spec, "llp_bf16").shapes, {})
    assert abs(row["util_bf16"] - row["gflops"] / mix["xla_bf16_gflops"]) < 1e-6 * row["util_bf16"]
    assert f"{result['peak']['xla_bf16_gflops']:.0f} GFLOP/s**" in text
    assert f"llp_bf16 **{100 * row['util_bf16']:.0f}%**" in text
    assert "(bfloat16 " in text  # per-shape bfloat16 rates
