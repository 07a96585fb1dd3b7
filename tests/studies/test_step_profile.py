"""The step benchmark's measuring pieces: matmul FLOPs read from a jaxpr (scanned bodies counted
`length` times, batched matmuls apart), the HLO classifier, a profiled breakdown, a peak."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from llp_jax.kernels import blas
from llp_jax.studies import step_profile


def test_forward_matmuls_counts_scanned_bodies_and_separates_batched_ones():
    def f(x_BxTxD, w_DxD, w_DxF):
        def layer(h, _):
            return jnp.tanh(h @ w_DxD), None

        h, _ = jax.lax.scan(layer, x_BxTxD, None, length=3)
        scores = jnp.einsum("btd,bsd->bts", h, h)  # batched: attention-like
        return (h @ w_DxF).sum() + scores.sum()

    x = jnp.ones((2, 8, 4))
    shapes, batched = step_profile.forward_matmuls(f, x, jnp.ones((4, 4)), jnp.ones((4, 6)))
    assert shapes == {(16, 4, 4): 3, (16, 4, 6): 1}
    assert step_profile.matmul_flops(shapes) == 3 * 2 * 16 * 4 * 4 + 2 * 16 * 4 * 6
    assert batched == {(2, 8, 4, 8): 1}  # Z=2 blocks of [8, 4] x [4, 8]
    assert step_profile.matmul_flops(batched) == 2 * 2 * 8 * 8 * 4


def test_forward_matmuls_reads_any_batch_and_free_axis_order():
    # Attention's head-major scores: batch axes (b, h) inside, free axes on both sides.
    def f(q_BxQxHxD, k_BxKxHxD):
        return jnp.einsum("bqhd,bkhd->bhqk", q_BxQxHxD, k_BxKxHxD).sum()

    _, batched = step_profile.forward_matmuls(f, jnp.ones((2, 8, 3, 4)), jnp.ones((2, 5, 3, 4)))
    assert batched == {(6, 8, 4, 5): 1}


def test_classify_hlo_and_a_profiled_breakdown():
    @jax.jit
    def f(a, b):
        return jnp.exp(a @ b).T + 1.0

    a = jnp.asarray(np.random.default_rng(0).standard_normal((256, 256)), jnp.float32)
    compiled = f.lower(a, a).compile()
    kinds = step_profile.classify_hlo(compiled.as_text())
    assert "matmul" in kinds.values()
    assert set(kinds.values()) <= {"matmul", "elementwise", "movement", "control"}
    out = step_profile.profile_breakdown(lambda: compiled(a, a), compiled.as_text())
    assert out["matmul"] > 0 and out["wall_ms"] > 0
    assert out["matmul"] + out["elementwise"] + out["movement"] <= out["wall_ms"] * 1.5 + 5


def test_matmul_peak_weights_shapes_by_how_often_they_run():
    peak = step_profile.matmul_peak({(64, 32, 48): 2, (32, 32, 32): 1}, min_s=0.01)
    assert [r["shape"] for r in peak["shapes"]] == [[32, 32, 32], [64, 32, 48]]
    for lib in ("numpy", "xla"):
        rates = [r[f"{lib}_gflops"] for r in peak["shapes"]]
        assert min(rates) * 0.999 <= peak[f"{lib}_gflops"] <= max(rates) * 1.001
        assert peak[f"{lib}_all_gflops"] == peak[f"{lib}_gflops"]  # nothing batched


def test_matmul_peak_with_batched_shapes_and_each_steps_own_mix():
    shapes, batched = {(64, 32, 48): 2}, {(4, 16, 8, 16): 3}
    peak = step_profile.matmul_peak(shapes, batched, min_s=0.01)
    assert [r["shape"] for r in peak["shapes"]] == [[64, 32, 48], [4, 16, 8, 16]]
    for lib in ("numpy", "xla"):
        two_d, blocks = (r[f"{lib}_gflops"] for r in peak["shapes"])
        assert abs(peak[f"{lib}_gflops"] - two_d) < 1e-9 * two_d  # the non-batched mix: one shape
        # All shapes: total FLOPs over total time at each shape's rate.
        flops = (2 * 64 * 32 * 48 * 2, 2 * 4 * 16 * 8 * 16 * 3)
        expected = sum(flops) / (flops[0] / two_d + flops[1] / blocks)
        assert abs(peak[f"{lib}_all_gflops"] - expected) < 1e-9 * expected
    # One step's own mix, from the rates of a peak measured on more shapes than it runs.
    own = step_profile.mix_peak(peak, {(64, 32, 48): 1}, {})
    rate = peak["shapes"][0]["numpy_gflops"]
    assert abs(own["numpy_gflops"] - rate) < 1e-9 * rate
    assert own["numpy_all_gflops"] == own["numpy_gflops"]
    mixed = step_profile.mix_peak(peak, shapes, batched)
    assert abs(mixed["xla_all_gflops"] - peak["xla_all_gflops"]) < 1e-9 * mixed["xla_all_gflops"]


def test_classify_hlo_reads_a_custom_calls_target():
    # The CPU BLAS kernel is a custom call: a matmul by its target's name, not an elementwise op.
    hlo = "\n".join([
        "ENTRY %main.1 (p0: f32[4,8,8]) -> f32[4,8,8] {",
        "  %p0 = f32[4,8,8]{2,1,0} parameter(0)",
        '  %ffi_call.3 = f32[4,8,8]{2,1,0} custom-call(%p0, %p0), custom_call_target="llp_batched_matmul_f32"',
        '  ROOT %ffi_call.4 = f32[4,8,8]{2,1,0} custom-call(%ffi_call.3), custom_call_target="my_softmax"',
        "}",
    ])  # fmt: skip
    kinds = step_profile.classify_hlo(hlo)
    assert kinds["ffi_call.3"] == "matmul"
    assert kinds["ffi_call.4"] == "elementwise"


def test_op_spans_run_asynchronous_dots_to_their_completion():
    def x(name, ts, dur=0.0, tid=1):  # a complete ('X') trace event
        return {"ph": "X", "name": name, "ts": ts, "dur": dur, "tid": tid}

    run = "ThunkExecutor::Execute"
    events = [
        x("fusion.1", 0, 1000), x("end: fusion.1", 1000),  # synchronous: its own event
        # An Eigen dot: launched at 1 ms; done at 31 ms, when thread 2 runs its successor
        # (inside an Execute event) and then marks the dot done.
        x("dot.7", 1000, 100), x(run, 31000, 5000, tid=2), x("fusion.9", 31000, 5000, tid=2),
        x("end: fusion.9", 36000, tid=2), x("end: dot.7", 36010, tid=2),
        # A loop body's dot, run twice; the second's marker has no Execute event before it.
        x("dot.8", 40000, 100), x(run, 42000, 1000), x("end: dot.8", 43000),
        x("dot.8", 50000, 100), x("end: dot.8", 54000),
        # A synchronous op whose marker came late: its own event counts.
        x("slice.3", 60000, 300), x(run, 60400, 68000, tid=2), x("end: slice.3", 128400, tid=2),
        x("copy.4", 70000, 2000),  # no marker at all
        {"ph": "M", "name": "process_name"},
    ]  # fmt: skip
    spans = sorted(step_profile.op_spans(events, frozenset({"dot.7", "dot.8"})))
    assert spans == [
        ("copy.4", 2.0), ("dot.7", 30.0), ("dot.8", 2.0), ("dot.8", 4.0), ("fusion.1", 1.0),
        ("fusion.9", 5.0), ("slice.3", 0.3),
    ]  # fmt: skip


def test_eigen_dots_are_the_dot_instructions():
    @jax.jit
    def f(a, b):
        return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ()))) + jnp.exp(a[:4, :4])

    a = jnp.ones((64, 4), jnp.float32)
    hlo = f.lower(a, a).compile().as_text()
    dots = step_profile.eigen_dots(hlo)
    assert dots and all(step_profile.classify_hlo(hlo).get(n) == "matmul" for n in dots)


def test_a_breakdown_counts_dots_xla_runs_asynchronously():
    # x^T @ y contracts the rows of both: XLA:CPU leaves it to Eigen, asynchronously. Its launch
    # event alone is ~0.1 ms of a ~30 ms dot.
    def f(a, b):
        tn = lambda p, q: jax.lax.dot_general(p, q, (((0,), (0,)), ((), ())))  # noqa: E731
        return tn(a, b), tn(jnp.tanh(a) * 2 + jnp.exp(b), a) + 1

    a = jnp.asarray(np.random.default_rng(0).standard_normal((4096, 512)), jnp.float32)
    compiled = jax.jit(f).lower(a, a).compile()
    jax.block_until_ready(compiled(a, a))
    out = step_profile.profile_breakdown(lambda: compiled(a, a), compiled.as_text())
    assert out["matmul"] > 0.5 * out["wall_ms"], out


def test_matmul_peak_measures_bfloat16_dots_when_asked():
    shapes, batched = {(64, 32, 48): 2}, {(4, 16, 8, 16): 3}
    plain = step_profile.matmul_peak(shapes, batched, min_s=0.01)
    assert "xla_bf16_gflops" not in plain and "xla_bf16_gflops" not in plain["shapes"][0]
    peak = step_profile.matmul_peak(shapes, batched, min_s=0.01, bf16=True)
    two_d, blocks = (r["xla_bf16_gflops"] for r in peak["shapes"])
    assert two_d > 0 and blocks > 0
    assert abs(peak["xla_bf16_gflops"] - two_d) < 1e-9 * two_d
    flops = (2 * 64 * 32 * 48 * 2, 2 * 4 * 16 * 8 * 16 * 3)
    expected = sum(flops) / (flops[0] / two_d + flops[1] / blocks)
    assert abs(peak["xla_bf16_all_gflops"] - expected) < 1e-9 * expected


def test_forward_matmuls_counts_the_blas_kernels_calls_as_batched_dots():
    """On CPU, LLP's float32 attention blocks run as the BLAS kernel's FFI call, not as a
    dot_general: uncounted, the step benchmark's pages lost them from the 'blocks in' peak.
    Tracing needs no built kernel."""
    a, b_nk, b_kn = jnp.ones((6, 16, 8)), jnp.ones((6, 32, 8)), jnp.ones((6, 8, 32))
    shapes, batched = step_profile.forward_matmuls(
        lambda a, b_nk, b_kn: blas.batched_matmul(a, b_nk, transpose_b=True)
        + blas.batched_matmul(a, b_kn, transpose_b=False)
        + blas._call(jnp.swapaxes(a, 1, 2), b_kn, True, False),  # a^T stored [Z, K, M]
        a, b_nk, b_kn,
    )  # fmt: skip
    assert not shapes and batched == {(6, 16, 8, 32): 3}
