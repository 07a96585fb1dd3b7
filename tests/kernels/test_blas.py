"""`llp_jax.kernels.blas`: the CPU BLAS kernel for attention's float32 batched matmuls.

It must build here (this machine has g++ and numpy's OpenBLAS), equal an einsum in values and
gradients for both forms and every backward transpose, be saved by the 'dots_all' remat policy
like the dot it replaces, leave the train step's numbers unchanged, and fall back to XLA's dot
(with a warning, not a failure) wherever it cannot be built or its BLAS fails the probe.
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llp_jax.kernels import blas
from llp_jax.models.remat import REMAT_POLICIES
from tests.helpers import REPO
from tests.helpers.cli import cli_env


@pytest.fixture(scope="module")
def kernel():
    why = blas._load()
    assert why is None, f"the kernel must build on this machine: {why}"


def _pair(z, m, k, n, transpose_b, seed=0):
    r = np.random.default_rng(seed)
    a = jnp.asarray(r.standard_normal((z, m, k)), jnp.float32)
    b = jnp.asarray(r.standard_normal((z, n, k) if transpose_b else (z, k, n)), jnp.float32)
    w = jnp.asarray(r.standard_normal((z, m, n)), jnp.float32)
    return a, b, w


@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("shape", [(3, 128, 130, 129), (2, 256, 64, 256), (5, 300, 97, 77)])
def test_equals_einsum_values_and_gradients(kernel, transpose_b, shape):
    a, b, w = _pair(*shape, transpose_b)
    eq = "zmk,znk->zmn" if transpose_b else "zmk,zkn->zmn"

    def loss(f):
        return jax.jit(jax.value_and_grad(lambda a, b: jnp.sum(f(a, b) * w), (0, 1)))(a, b)

    ours = loss(lambda a, b: blas.batched_matmul(a, b, transpose_b))
    ref = loss(lambda a, b: jnp.einsum(eq, a, b, precision="highest"))
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-4 * float(jnp.abs(y).max()))
    y_fwd = jax.jit(lambda a, b: blas.batched_matmul(a, b, transpose_b))(a, b)
    np.testing.assert_allclose(y_fwd, jnp.einsum(eq, a, b, precision="highest"), rtol=2e-5,
                               atol=2e-4)  # fmt: skip


def test_numpys_blas_keeps_its_threads(kernel):
    """The kernel runs the BLAS single-threaded while a call is in flight. That count is global
    in numpy's OpenBLAS, so calls overlapping on several threads must still restore it."""
    import concurrent.futures
    import ctypes

    lib = ctypes.CDLL(blas.find_openblas()[0])
    get = next(getattr(lib, s) for s in ("scipy_openblas_get_num_threads64_",
                                         "openblas_get_num_threads") if hasattr(lib, s))  # fmt: skip
    before = get()
    a, b, _ = _pair(16, 256, 64, 256, True)
    fn = jax.jit(lambda a, b: blas.batched_matmul(a, b, True))
    fn(a, b).block_until_ready()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: fn(a, b).block_until_ready(), range(24)))
    assert get() == before


def test_empty_contraction_is_zero(kernel):
    a, b = jnp.ones((2, 3, 0), jnp.float32), jnp.ones((2, 0, 4), jnp.float32)
    y = jax.jit(lambda a, b: blas._call(a, b, False, False))(a, b)
    np.testing.assert_array_equal(y, np.zeros((2, 3, 4), np.float32))


def test_guards_small_blocks_dtypes_and_devices(kernel):
    big = _pair(2, 256, 64, 256, True)[:2]
    small = _pair(2, 128, 64, 128, True)[:2]  # 1M multiply-adds: OpenBLAS's crashing range
    assert 128 * 64 * 128 <= blas.MIN_BLOCK_MACS < 256 * 64 * 256
    assert not blas.takes(*small, True)
    assert not blas.takes(big[0].astype(jnp.bfloat16), big[1].astype(jnp.bfloat16), True)
    # The test session has 8 host devices: a custom call would be gathered onto each.
    assert jax.device_count() > 1 and not blas.enabled() and not blas.takes(*big, True)
    assert "devices" in blas.status()


@pytest.mark.parametrize("policy", ["dots_all", "dots", "full"])
def test_backward_never_reruns_the_forward_product(kernel, policy):
    """Kept like the dot it replaces under 'dots_all' (the CPU default), and under every other
    policy too (JAX keeps a custom_vjp's outputs): 3 calls, forward, da and db."""
    a, b, w = _pair(2, 256, 64, 256, True)

    def layer(a, b):
        return jnp.sum(jnp.exp(blas.batched_matmul(a, b, True) * 0.01) * w)

    fn = jax.grad(jax.checkpoint(layer, policy=REMAT_POLICIES[policy]), (0, 1))
    assert jax.jit(fn).lower(a, b).as_text().count(f"custom_call @{blas.TARGET}(") == 3


def test_build_is_cached(kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("LLP_JAX_KERNEL_CACHE", str(tmp_path))
    so, why = blas.build()
    assert so is not None and why == "" and os.path.dirname(os.path.dirname(so)) == str(tmp_path)
    stamp = os.stat(so).st_mtime_ns
    assert blas.build() == (so, "") and os.stat(so).st_mtime_ns == stamp
    assert glob.glob(os.path.join(os.path.dirname(so), "*")) == [so]  # no temporary left


def test_damaged_cache_entry_is_rebuilt(kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("LLP_JAX_KERNEL_CACHE", str(tmp_path))
    so, _ = blas.build()
    with open(so, "wb") as f:
        f.write(b"not a shared library")
    code = "from llp_jax.kernels import blas; print(blas.status())"
    done = _run(code, LLP_JAX_KERNEL_CACHE=str(tmp_path))
    assert done.stdout.startswith("in use"), done.stdout + done.stderr[-2000:]
    assert open(so, "rb").read(4) == b"\x7fELF"


def test_build_without_compiler_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("LLP_JAX_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    so, why = blas.build()
    assert so is None and "no C++ compiler" in why


def test_probe_catches_a_crashing_blas():
    """The probe runs the BLAS in a subprocess: a crash there is a reason, not a dead run.
    libc's abort() stands in for a batched matmul that crashes (as OpenBLAS 0.3.31's does on
    blocks of at most ~1e6 multiply-adds)."""
    libc = ctypes.util.find_library("c")
    why = blas.probe((libc, "abort", ""))
    assert why is not None and "failed its probe" in why
    found = blas.find_openblas()
    assert found is not None and blas.probe(found) is None


_STEP = textwrap.dedent(
    """
    import os, sys, json
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from llp_jax import models
    from llp_jax.kernels import blas

    cfg = models.sized("llp", 512, models.StructuralSizes(segments=2), vocab_size=64,
                       d_model=128, num_layers=2, num_heads=2, dropout=0.0)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 512)), jnp.int32)

    def run():
        model = models.build(cfg, seed=0)
        graph, params = nnx.split(model)
        def loss(params):
            logits = nnx.merge(graph, params)(tokens)
            return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[..., 0])
        fn = jax.jit(jax.value_and_grad(loss))
        hlo = fn.lower(params).as_text()
        value, grads = fn(params)
        return float(value), jax.tree.leaves(grads), hlo.count("llp_batched_matmul_f32")

    os.environ["LLP_JAX_CPU_BLAS"] = "0"
    v0, g0, c0 = run()
    os.environ["LLP_JAX_CPU_BLAS"] = "1"
    v1, g1, c1 = run()
    rel = max(float(jnp.abs(a - b).max() / (jnp.abs(a).max() + 1e-30)) for a, b in zip(g0, g1))
    print(json.dumps({"loss": [v0, v1], "grad_rel": rel, "calls": [c0, c1],
                      "status": blas.status()}))
    """
)


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=cli_env(**env), timeout=600)  # fmt: skip


def test_train_step_same_with_and_without_kernel(kernel):
    """One device (as a user's CPU run): the LLP loss and gradients with the kernel equal those
    of XLA's dot, and the kernel is really in the program (its custom calls in the HLO)."""
    import json

    done = _run(_STEP)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["calls"][0] == 0 and out["calls"][1] > 0, out
    assert out["status"].startswith("in use"), out
    assert abs(out["loss"][0] - out["loss"][1]) <= 1e-5 * abs(out["loss"][0]), out
    assert out["grad_rel"] < 1e-4, out


def test_unbuildable_kernel_falls_back_with_one_warning(tmp_path):
    code = _STEP.replace("v1, g1, c1 = run()", "v1, g1, c1 = run(); run()")
    done = _run(code, CXX=str(tmp_path / "no-such-compiler"), LLP_JAX_KERNEL_CACHE=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    out = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert out["calls"] == [0, 0] and out["loss"][0] == out["loss"][1], out
    assert "unavailable: no C++ compiler" in out["status"], out
    assert done.stderr.count("CPU BLAS kernel for attention's matmuls unavailable") == 1
