"""glibc malloc settings for CPU runs, applied by re-executing a launcher once as it starts.

With glibc's defaults, every buffer over its (dynamic, at most 32 MiB) mmap threshold is a fresh
mapping: XLA:CPU's and PyTorch's large temporaries are page-faulted in and unmapped again on
every step. On the step benchmark's machine that was ~300,000 page faults and ~0.45 s of kernel
time per LLP train step, and far worse where memory is tight: in two runs of
`python -m experiments.benchmark_step` one after the other, the dense transformer's step took
7.64 s with the defaults and 2.98 s with the settings below, the code-faithful LLP with dropout
5.65 s vs 3.20 s (experiments/results/step_benchmark*.md state the allocator of each page).
The settings keep freed memory in one heap for reuse: one arena, no mmap below 4 GiB, no trimming, 1 GiB of top
padding; then a step page-faults nothing. The costs: the process keeps its peak heap (resident
memory does not shrink after a peak), and one arena serialises malloc between threads, so XLA's
multi-threaded compilation takes ~1.6x as long (7.1-7.6 s vs 4.5 s for the LLP step; the test
suite, which is mostly compilation, opts out). Two arenas compile at 4.8-5.0 s but leave
~53,000 faults per step, and the step benchmark ran slower with them (the authors' step 2.27 s
against 1.81 s with one arena).

glibc reads them only at process start, so a launcher re-executes itself (same argv, same PID)
once with them added, before it imports anything heavy (start.py); variables the user set are
kept. Not applied off Linux/glibc, where an
accelerator plugin is installed (unless JAX_PLATFORMS=cpu), or with LLP_JAX_HOST_MALLOC=system.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from collections.abc import Mapping

TUNED = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(1 << 32),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 34),
    "MALLOC_TOP_PAD_": str(1 << 30),
}
OPT_OUT = "LLP_JAX_HOST_MALLOC"  # 'system': keep glibc's defaults
ACCELERATOR_MODULES = ("libtpu", "jax_plugins", "jax_cuda12_plugin", "jax_cuda13_plugin")


def applies(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the tuned settings are wanted in this process (see the module docstring)."""
    if environ.get(OPT_OUT, "tuned") == "system":
        return False
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    if environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
        return True
    return not any(importlib.util.find_spec(m) for m in ACCELERATOR_MODULES)


def tuned_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`environ` with every TUNED variable it lacks added (the user's own values win)."""
    return {**TUNED, **environ}


def ensure() -> None:
    """Re-executes this process with the tuned settings if they apply and are not all set yet."""
    if not applies() or all(k in os.environ for k in TUNED):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, list(sys.orig_argv), tuned_environment())
    except OSError as e:  # e.g. an interpreter this user may run but not re-execute by its path
        print(f"warning: could not restart with the tuned malloc settings ({e.strerror}: "
              f"{sys.executable}); continuing with glibc's defaults (set {OPT_OUT}=system to "
              "skip the restart)", file=sys.stderr)  # fmt: skip
        os.environ[OPT_OUT] = "system"  # child processes (workers) do not try again
