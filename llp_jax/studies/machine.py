"""What machine a results page was measured on: its CPU and the host allocator settings (both
move CPU step times, so every page states them)."""

from __future__ import annotations

import os
import platform


def host_allocator() -> str:
    """The host allocator settings this process was started with (glibc's MALLOC_* variables,
    GLIBC_TUNABLES, an LD_PRELOADed allocator), or 'glibc defaults': they move CPU step times
    (a PyTorch step by ~1.25x: experiments/results/step_benchmark_glibc_defaults.md), so pages
    state them."""
    names = sorted(k for k in os.environ if k.startswith("MALLOC_"))
    names += [k for k in ("GLIBC_TUNABLES", "LD_PRELOAD") if k in os.environ]
    return " ".join(f"{k}={os.environ[k]}" for k in names) or "glibc defaults"


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else the platform's word for it: figures
    from different CPUs are not comparable, so every results page names it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
