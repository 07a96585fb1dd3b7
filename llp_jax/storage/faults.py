"""Storage faults: what a full disk, a quota, a permission or a read-only folder looks like however
deeply Orbax or tensorstore wrapped it, and the error a failed checkpoint write becomes.
Shared by the writer (checkpoints.py), the readers (evaluation) and the command-line tools'
filters of background-thread errors.
"""

from __future__ import annotations

from llp_jax.errors import STORAGE_ERRNOS, LLPError, first_line


class CheckpointWriteError(LLPError, OSError):
    """A checkpoint could not be written (disk full, permission denied, ...): the run stops."""


_CAUSES = {  # what storage errors say deep inside tensorstore / Orbax -> the one-line cause
    "No space left on device": "no space left on device",
    "RESOURCE_EXHAUSTED": "no space left on device",
    "Disk quota exceeded": "disk quota exceeded",
    "Permission denied": "permission denied",
    "PERMISSION_DENIED": "permission denied",
    "Read-only file system": "read-only file system",
}


def is_storage_fault(error: BaseException) -> bool:
    """A full disk, a quota, a permission or a read-only folder, however deeply wrapped."""
    return not describe_cause(error).startswith(f"{type(error).__name__}: ")


def describe_cause(error: BaseException) -> str:
    """The storage cause of an error, however deep Orbax or tensorstore wrapped it."""
    seen, e = set(), error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
            return e.strerror.lower() if e.strerror else str(e)
        text = str(e)
        for marker, cause in _CAUSES.items():
            if marker in text:
                return cause
        e = e.__cause__ or e.__context__
    return f"{type(error).__name__}: {first_line(error)}"
