"""Storage faults: what a full disk, a quota, a permission or a read-only folder looks like however
deeply Orbax or tensorstore wrapped it, and the error a failed checkpoint write becomes.
Shared by the writer (checkpoints.py), the readers (evaluation) and the command-line tools'
filters of background-thread errors.
"""

from __future__ import annotations

import re

from llp_jax.backend import out_of_memory
from llp_jax.errors import STORAGE_ERRNOS, LLPError, first_line


class CheckpointWriteError(LLPError, OSError):
    """A checkpoint could not be written (disk full, permission denied, ...): the run stops."""


class CheckpointReadError(LLPError, RuntimeError):
    """An intact checkpoint could not be read here (out of memory, no permission): it is kept,
    not set aside as damaged, and no older step is tried in its place."""


_READ_FIXES = {
    "out of memory": "free memory, or restore on a machine (or mesh) with more",
    "permission denied": "make its files readable by this user",
    "another layout": "use the settings it was written with (or --noresume, or another --workdir, "
    "to start over)",
}
# Orbax's words when the tree a step holds is not the tree asked for: the step's metadata was
# read, so it is not damage but a run set up differently (its optimizer settings).
_OTHER_LAYOUT = "tree structures do not match"


def read_fault(error: BaseException) -> str | None:
    """The cause when a checkpoint read failed through no fault of the step ('out of memory:
    ...', 'permission denied', another state layout), else None (the step may be damaged: try
    an older one).

    Why: a read that runs out of memory (resuming on a smaller machine: numpy's MemoryError
    under tensorstore's error, or XLA's RESOURCE_EXHAUSTED on a device) looked like damage, so
    the trainer set the newest good step aside and fell back to an older one, or told the user
    to start over."""
    memory = out_of_memory(error)
    if memory is not None:
        return f"out of memory ({memory})"
    seen, e = set(), error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = first_line(e)
        if _OTHER_LAYOUT in text:
            return ("another layout of arrays than this run builds (written with other settings, "
                    "e.g. the optimizer's: train.trainable, train.lora_rank, clipping on or off)")  # fmt: skip
        if isinstance(e, PermissionError) or "PERMISSION_DENIED" in text:
            return "permission denied" + (
                f" on {e.filename}" if getattr(e, "filename", None) else ""
            )
        e = e.__cause__ or e.__context__
    return None


def read_failure(step: int, directory, cause: str) -> CheckpointReadError:
    """The one-line error for an intact step that could not be read (see `read_fault`)."""
    fix = next(f for k, f in _READ_FIXES.items() if cause.startswith(k))
    return CheckpointReadError(
        f"cannot read checkpoint step {step} in {directory}: {cause}; the step is kept as it "
        f"is (not damaged): {fix}, then run again"
    )


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
            if marker in text and not (marker == "RESOURCE_EXHAUSTED" and "memory" in text):
                return cause  # (a device out of memory is RESOURCE_EXHAUSTED too: not storage)
        e = e.__cause__ or e.__context__
    return f"{type(error).__name__}: {first_line(error)}"


_CUT_SHORT = re.compile(r"Requested byte range \[\d+, (\d+)\) is not valid for value of size (\d+)")
_FILE = re.compile(r'local file "([^"]+)"')


def damage_reason(error: BaseException) -> str:
    """Why a step did not read, in words, for the warning that skips it or sets it aside:
    tensorstore's error for an array file cut short (a copy or upload stopped part-way) is a
    paragraph of its JSON spec, cut off before it names the file."""
    text = str(error)
    cut, files = _CUT_SHORT.search(text), _FILE.findall(text)
    if cut and files:
        return f"{files[-1]} is cut short ({cut[2]} bytes where {cut[1]} are read)"
    return f"{type(error).__name__}: {first_line(error, 300)}"
