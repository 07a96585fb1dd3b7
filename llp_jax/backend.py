"""Starting JAX's backend, or one line saying why it cannot start.

Why: JAX starts its backend on the first device access, wherever that is. When the platform a
user asked for (JAX_PLATFORMS=tpu on a machine without libtpu, JAX_PLATFORMS=cuda without a
CUDA-enabled jax) cannot start, that access raises a RuntimeError, or for 'cuda' a bare
AssertionError, from deep inside JAX; read inside a checkpoint loader, the failure looked like
a damaged checkpoint (and the advice to train again with --noresume would have set good work
aside). `check()` runs before the first device access of the library's entry points (building
a model, making a mesh, reading checkpoints) and turns the failure into a `BackendError` that
names the setting and the fix.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from llp_jax.errors import LLPError, first_line

_started = False
_HINT = re.compile(r"\s*\(set JAX_PLATFORMS='' to automatically choose an available backend\)")


# What running out of host or device memory says, wherever JAX, XLA or a reader raised it: XLA:CPU
# "Out of memory allocating N bytes", GPU "RESOURCE_EXHAUSTED: Out of memory while trying to
# allocate", TPU "Ran out of memory in memory space hbm" (compile) or "Error allocating device
# buffer" (run), C++ std::bad_alloc; numpy's MemoryError is matched by type.
_OUT_OF_MEMORY = ("Out of memory", "out of memory", "Ran out of memory",
                  "Error allocating device buffer", "std::bad_alloc")  # fmt: skip


class OutOfMemoryError(LLPError, MemoryError):
    """A computation did not fit in this machine's (or device's) memory; the message says what
    to make smaller."""


def out_of_memory(error: BaseException) -> str | None:
    """'ExceptionType: first line' of the out-of-memory error in `error`'s chain, else None."""
    seen, e = set(), error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = first_line(e)
        if isinstance(e, MemoryError) or any(m in text for m in _OUT_OF_MEMORY):
            return f"{type(e).__name__}: {text}"
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def memory_fix(fix: str | Callable[[], str]):
    """Turns running out of memory inside the block into one OutOfMemoryError line ending in
    `fix` (what to make smaller; a callable is asked when it happens); any other error passes
    unchanged."""
    try:
        yield
    except LLPError:
        raise
    except Exception as e:
        memory = out_of_memory(e)
        if memory is None:
            raise
        raise OutOfMemoryError(
            f"out of memory ({memory}); {fix if isinstance(fix, str) else fix()}"
        ) from e


def device_memory(devices: Sequence[Any]) -> tuple[int, str] | None:
    """(bytes, a name) of the memory these devices of this process have together; None where
    it is not known. CPU devices share the host's memory (its cgroup's limit where lower)."""
    import jax  # noqa: PLC0415

    local = [d for d in devices if d.process_index == jax.process_index()]
    if all(d.platform == "cpu" for d in local):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
            try:
                total = min(total, int(open(path).read().strip()))
            except (OSError, ValueError):  # absent, or "max"
                pass
        return total, "this host's memory"
    try:
        limits = [d.memory_stats()["bytes_limit"] for d in local]
    except (AttributeError, KeyError, TypeError, RuntimeError):
        return None
    return sum(limits), f"the memory of {len(local)} {local[0].device_kind}"


def size_text(n: float) -> str:
    """Bytes for a message: '4.1 KB', '2.9 TB', '2.4e+14 TB' (sizes past any memory)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            break
        n /= 1000
    return f"{n} B" if unit == "B" else f"{n:,.1f} {unit}" if n < 1e6 else f"{n:.1e} {unit}"


class BackendError(LLPError, RuntimeError):
    """JAX's backend (the platform JAX_PLATFORMS or jax_platforms asks for) cannot start."""


def check() -> None:
    """Starts JAX's backend (once per process: later calls cost nothing).

    Raises:
      BackendError: it cannot start; the message names the platform setting and the fix.
    """
    global _started
    if _started:
        return
    import jax  # noqa: PLC0415  (this module stays importable without starting anything)

    try:
        jax.devices()
    except Exception as e:  # noqa: BLE001  whatever a backend's start raises, it did not start
        raise BackendError(describe(e, jax.config.jax_platforms)) from e
    _started = True


def describe(error: BaseException, platforms: str | None) -> str:
    """The one line for a backend that did not start under the setting `platforms`."""
    reason = _HINT.sub("", first_line(error, 300)) or f"{type(error).__name__} inside JAX"
    if not platforms:
        return (
            f"JAX could not start a backend ({reason}); check the jax / jaxlib install "
            "(pip install -U jax) or set JAX_PLATFORMS=cpu"
        )
    from_env = os.environ.get("JAX_PLATFORMS") == platforms
    setting = f"JAX_PLATFORMS={platforms}" if from_env else f"jax_platforms={platforms!r}"
    unset = "unset JAX_PLATFORMS" if from_env else "leave jax_platforms unset"
    return (
        f"JAX could not start the platform {setting} asks for ({reason}); {unset} (or set it "
        "to cpu) to run on the devices this machine has, or install jax for that platform: "
        "pip install -U 'jax[tpu]' / 'jax[cuda12]'"
    )
