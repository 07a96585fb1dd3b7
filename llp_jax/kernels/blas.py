"""Attention's float32 batched matmuls on CPU through the BLAS numpy ships (an XLA FFI call).

Why: XLA:CPU runs a dot with a batch axis as a loop of small matmuls well below its 2-D rate.
On the step benchmark's blocks ([128, 256, 64] x [128, 64, 256] and the other five forms of
attention's forward and backward) it reached 95-105 GFLOP/s against 155-178 for this kernel
(2-core Xeon, alternated in one process), and the code-faithful LLP train step was 1.06-1.12x
faster in four A/B runs (README, step benchmark). Memory moves both ways: the train plan at the
step benchmark's config 1061 -> 865 MiB, at the scaling benchmark's +7% (the score matmul's
custom_vjp keeps its sliced q and k, which XLA's dot recomputed) and its forward plan +23% (the
probabilities are materialised for the value matmul; XLA fused their exp into its dot).

How: `blas_batched_matmul.cc` is compiled here on first use with the C++ compiler (`$CXX`, else
g++) against jaxlib's FFI headers, into a cache folder keyed by the source, jaxlib and numpy.
It finds `cblas_sgemm_batch_strided` in numpy's bundled OpenBLAS at run time (nothing is
linked) and slices the batch over XLA's own threads, one single-threaded BLAS call per slice.
Anything missing (no compiler, no OpenBLAS with that function, another jaxlib) leaves the plain
XLA dot in place, with one warning; `LLP_JAX_CPU_BLAS=0` turns the kernel off.

Two guards: OpenBLAS 0.3.31's batched path crashes on blocks of at most ~1e6 multiply-adds
(its small-matrix kernels are not set up on that path), so only blocks above `MIN_BLOCK_MACS`
take the kernel, and a subprocess probes that size (every transpose) once per cache before the
kernel is first used. A custom call is not split by XLA's SPMD partitioner (it would gather its
operands whole onto every device), so it is used only when JAX has a single device.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import jax
import jax.numpy as jnp

from llp_jax import caches

TARGET = "llp_batched_matmul_f32"
MIN_BLOCK_MACS = 1 << 21  # m * n * k of one block; OpenBLAS's small-matrix bound is 1e6
_SOURCE = os.path.join(os.path.dirname(__file__), "blas_batched_matmul.cc")
# (batched matmul, per-thread thread count) symbols in numpy's scipy-openblas64 build.
_BATCH = ("scipy_cblas_sgemm_batch_strided64_", "cblas_sgemm_batch_strided")
_LOCAL_THREADS = ("scipy_openblas_set_num_threads_local64_", "openblas_set_num_threads_local")
_lock = threading.Lock()
_state: dict[str, object] = {}


def _why_not() -> str | None:
    """None when the kernel is in use (CPU, a single device, not turned off, and it loaded)."""
    if os.environ.get("LLP_JAX_CPU_BLAS", "1") == "0":
        return "off (LLP_JAX_CPU_BLAS=0)"
    if jax.default_backend() != "cpu":
        return f"not used on {jax.default_backend()}"
    if jax.device_count() != 1:
        return f"not used with {jax.device_count()} devices"
    why = _load()
    return None if why is None else f"unavailable: {why}"


def enabled() -> bool:
    return _why_not() is None


def status() -> str:
    """One line for benchmark pages: in use, or why not."""
    return _why_not() or f"in use ({_state['blas']})"


def takes(a_ZxMxK: jax.Array, b: jax.Array, transpose_b: bool) -> bool:
    """Whether `batched_matmul` would run this product through the kernel."""
    if a_ZxMxK.dtype != jnp.float32 or b.dtype != jnp.float32 or a_ZxMxK.ndim != 3:
        return False
    n = b.shape[1] if transpose_b else b.shape[2]
    return a_ZxMxK.shape[1] * a_ZxMxK.shape[2] * n > MIN_BLOCK_MACS and enabled()


def batched_matmul(a_ZxMxK: jax.Array, b: jax.Array, transpose_b: bool) -> jax.Array:
    """a @ b (b [Z, K, N]) or a @ b^T (b [Z, N, K], `transpose_b`), float32, through the
    kernel. Under `jax.checkpoint` its output is kept whatever the policy (JAX does not
    rematerialise a custom_vjp), as 'dots_all', the CPU default, keeps the dot it replaces."""
    return _matmul(a_ZxMxK, b, transpose_b)


def _call(a, b, transpose_a: bool, transpose_b: bool):
    m = a.shape[2] if transpose_a else a.shape[1]
    n = b.shape[1] if transpose_b else b.shape[2]
    out = jax.ShapeDtypeStruct((a.shape[0], m, n), jnp.float32)
    call = jax.ffi.ffi_call(TARGET, out, vmap_method="sequential")
    return call(a, b, transpose_a=transpose_a, transpose_b=transpose_b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(a, b, transpose_b):
    return _call(a, b, False, transpose_b)


def _matmul_fwd(a, b, transpose_b):
    return _call(a, b, False, transpose_b), (a, b)


def _matmul_bwd(transpose_b, residuals, dy_ZxMxN):
    a, b = residuals
    da = _call(dy_ZxMxN, b, False, not transpose_b)  # dy @ op(b)^T
    # d(b^T) = dy^T @ a ([Z, N, K]); d(b) = a^T @ dy ([Z, K, N])
    db = _call(dy_ZxMxN, a, True, False) if transpose_b else _call(a, dy_ZxMxN, True, False)
    return da, db


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _load() -> str | None:
    """Builds, probes, loads and registers the kernel once; None, or why it is unavailable."""
    with _lock:
        if "why" not in _state:
            try:
                _state["why"] = _build_and_register()
            except Exception as e:  # noqa: BLE001  any failure leaves XLA's dot in place
                _state["why"] = f"{type(e).__name__}: {e}"
            if _state["why"] is not None:
                logging.getLogger(__name__).warning(
                    "CPU BLAS kernel for attention's matmuls unavailable (%s); using XLA's dot",
                    _state["why"])  # fmt: skip
        return _state["why"]  # type: ignore[return-value]


def find_openblas() -> tuple[str, str, str] | None:
    """(library path, batched-matmul symbol, per-thread threads symbol) in numpy's OpenBLAS."""
    import numpy as np

    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so*"))):
        lib = ctypes.CDLL(path)
        batch = next((s for s in _BATCH if hasattr(lib, s)), None)
        local = next((s for s in _LOCAL_THREADS if hasattr(lib, s)), "")
        if batch is not None:
            return path, batch, local
    return None


def _build_and_register() -> str | None:
    blas = find_openblas()
    if blas is None:
        return "numpy's OpenBLAS (scipy-openblas64) with cblas_sgemm_batch_strided not found"
    so, why = build()
    if so is None:
        return why
    if not os.path.exists(so + ".probed"):
        why = probe(blas)
        if why is not None:
            return why
        open(so + ".probed", "w").close()
    try:
        lib = ctypes.CDLL(so)
    except OSError:  # a damaged cache entry (truncated, another machine's): build it again
        os.unlink(so)
        so, why = build()
        if so is None:
            return why
        lib = ctypes.CDLL(so)
    lib.llp_blas_load.argtypes = [ctypes.c_char_p] * 3
    path, batch, local = blas
    if lib.llp_blas_load(path.encode(), batch.encode(), local.encode()) != 0:
        return f"could not load {batch} from {path}"
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.LlpBatchedMatmulF32), platform="cpu")
    _state["blas"] = f"{os.path.basename(path)} {batch}" + (
        ", sliced over XLA's threads" * bool(local)
    )
    return None


def cache_dir() -> str:
    """LLP_JAX_KERNEL_CACHE, else `llp_jax.caches` ('kernels'); where no cache folder can be
    written (a home this user may not write), a fresh private folder: built once per process."""
    found = caches.folder("kernels", os.environ.get("LLP_JAX_KERNEL_CACHE", ""))
    return found or tempfile.mkdtemp(prefix="llp_jax_kernels_")


def build() -> tuple[str | None, str]:
    """Compiles the kernel into the cache (once per source, jaxlib and numpy); (path, "") or
    (None, why). The library is written under a temporary name and renamed into place."""
    import jaxlib
    import numpy as np

    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        return None, f"no C++ compiler ({cxx}; set CXX)"
    with open(_SOURCE, "rb") as f:
        key = hashlib.sha256(f.read() + f"{jaxlib.__version__} {np.__version__}".encode())
    folder = os.path.join(cache_dir(), key.hexdigest()[:16])
    so = os.path.join(folder, "libllp_blas.so")
    if os.path.exists(so):
        return so, ""
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    cmd = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-w", "-I", jax.ffi.include_dir(),
           _SOURCE, "-o", tmp, "-ldl", "-lpthread"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        os.unlink(tmp)
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"{cxx} failed: {last}"
    os.replace(tmp, so)
    return so, ""


_PROBE = """
import ctypes, sys, numpy as np
lib = ctypes.CDLL(sys.argv[1]); f = getattr(lib, sys.argv[2]); i = ctypes.c_int64
f.argtypes = [ctypes.c_int] * 3 + [i] * 3 + [ctypes.c_float, ctypes.c_void_p, i, i,
              ctypes.c_void_p, i, i, ctypes.c_float, ctypes.c_void_p, i, i, i]
rng = np.random.default_rng(0)
for m, n, k in [(129, 130, 128), (257, 64, 128), (64, 257, 128), (128, 128, 129)]:
    for ta in (0, 1):
        for tb in (0, 1):
            a = rng.standard_normal((3, k, m) if ta else (3, m, k), dtype=np.float32)
            b = rng.standard_normal((3, n, k) if tb else (3, k, n), dtype=np.float32)
            c = np.empty((3, m, n), np.float32)
            f(101, 111 + ta, 111 + tb, m, n, k, 1.0, a.ctypes.data, a.shape[2],
              a[0].size, b.ctypes.data, b.shape[2], b[0].size, 0.0, c.ctypes.data, n, m * n, 3)
            ref = (a.transpose(0, 2, 1) if ta else a) @ (b.transpose(0, 2, 1) if tb else b)
            assert np.allclose(c, ref, rtol=1e-4, atol=1e-3), (m, n, k, ta, tb)
"""


def probe(blas: tuple[str, str, str], timeout: float = 120.0) -> str | None:
    """Runs the BLAS's batched matmul in a subprocess on blocks just above `MIN_BLOCK_MACS`
    (all four transposes) against numpy: None, or why it cannot be used (a crash stays there)."""
    path, batch, _ = blas
    done = subprocess.run([sys.executable, "-c", _PROBE, path, batch], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return f"{batch} failed its probe: {last}"
    return None
