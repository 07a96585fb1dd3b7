"""Read-only access to the steps of a checkpoint directory: which steps are committed, which of
them are intact, a step's metadata and its params. Nothing here creates, cleans or moves
anything, so every function is safe beside a running trainer (which may delete a step while it
is being read: `newest_readable` then moves on to the next newest).

A step `<directory>/<step>/` holds 'state' (Orbax PyTree), 'meta' (JSON), optionally 'data' (the
Grain iterator, JSON) and 'metrics' (JSON), and Orbax's own `_CHECKPOINT_METADATA`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import jax
import orbax.checkpoint as ocp

from llp_jax import backend, paths
from llp_jax.errors import LLPError
from llp_jax.storage.faults import damage_reason, read_failure, read_fault

log = logging.getLogger(__name__)
T = TypeVar("T")

STATE, META, DATA = "state", "meta", "data"  # the items of a step
# How long a reader keeps listing a checkpoint directory again while a running trainer replaces
# the steps it reads (each new listing tries the newest step first).
REREAD_S = 60.0
# The JSON files of a step (relative to it); '*' = every file of that folder.
_JSON_FILES = ("_CHECKPOINT_METADATA", "meta/metadata", "metrics/metrics", "data/*",
               "state/_METADATA", "state/_sharding")  # fmt: skip


class CheckpointNotFoundError(LLPError, FileNotFoundError):
    """No (intact) checkpoint where one was expected."""


def step_dirs(directory: str | os.PathLike) -> list[int]:
    """Every step folder of a checkpoint directory, finished or not, oldest first."""
    root = paths.resolve(directory)
    if not root.is_dir():
        return []
    return sorted(int(d.name) for d in root.iterdir() if d.name.isdigit())


def no_checkpoint(directory: str | os.PathLike, fix: str) -> str:
    """The one line for a checkpoint directory without a committed step: the file that stands
    where a folder must be (a --workdir naming a file, or a path under one), a workdir given as
    another run's checkpoints folder, one of its steps or its data folder (`inside_a_run`),
    else `fix`."""
    blocker = paths.file_in_the_way(directory)
    if blocker:
        return f"no checkpoint in {directory}: {blocker} is not a folder"
    workdir = os.path.dirname(os.fspath(directory).rstrip("/"))
    inside = inside_a_run(workdir)
    if inside:
        run, step, folder = inside
        here = os.path.basename(workdir.rstrip("/")) == folder
        where = f"step {step} of" if step is not None else "" if here else "inside"
        also = f" (that step: evaluate --step={step}, init_from={run}:{step})" if step else ""
        return (f"no checkpoint in {directory}: {workdir} is {where + ' ' if where else ''}the "
                f"{folder} folder of the run {run}; name the run, {run}, instead{also}")  # fmt: skip
    return f"no checkpoint in {directory}: {fix}"


class Inside(NamedTuple):
    """Where a path lies in another run: its workdir, the step (a step folder itself, else
    None) and which of its folders ('checkpoints', or 'data': the data record)."""

    run: str
    step: int | None
    folder: str


def inside_a_run(path: str | os.PathLike) -> Inside | None:
    """Where local `path` is another run's checkpoints folder, one of its steps, its data folder
    (holding record.json), or lies below them: a --workdir there mixes a new run's files into
    that run's. None otherwise (URLs are not walked)."""
    text = os.fspath(path)
    if not text or paths.is_url(text):
        return None
    here = os.path.abspath(os.path.expanduser(text))
    folder = here
    while True:
        name = os.path.basename(folder)
        if name == "checkpoints" and committed_steps(folder):
            rest = os.path.relpath(here, folder).split(os.sep)
            step = int(rest[0]) if rest[0].isdigit() and len(rest) == 1 else None
            return Inside(os.path.dirname(folder), step, name)
        if name == "data" and os.path.isfile(os.path.join(folder, "record.json")):
            return Inside(os.path.dirname(folder), None, name)
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _in_progress(step_dir) -> bool:
    """On an object store Orbax writes a step in place and marks it done with
    commit_success.txt (a local step appears by an atomic rename, whole)."""
    return paths.is_url(os.fspath(step_dir)) and not (step_dir / "commit_success.txt").exists()


def committed_steps(directory: str | os.PathLike) -> list[int]:
    """Committed steps in a checkpoint directory, oldest first (no side effects: unlike a
    CheckpointManager, nothing is created or cleaned up)."""
    root = paths.resolve(directory)
    return [
        step
        for step in step_dirs(directory)
        if (root / str(step) / STATE).is_dir()
        and (root / str(step) / META).is_dir()
        and not _in_progress(root / str(step))
    ]


def unreadable(step_dir: str | os.PathLike) -> str | None:
    """The first file or folder of a local step this user may not read (None: all readable).

    Why: Orbax swallows a permission error while it reads a step's metadata (it logs it and
    returns None), so an unreadable step failed later with an unrelated TypeError and read as
    damaged: readers skipped it, the trainer set it aside. Remote steps are not walked (their
    access errors arrive as such)."""
    if paths.is_url(step_dir):
        return None
    for folder, _, files in os.walk(step_dir):
        if not os.access(folder, os.R_OK | os.X_OK):
            return folder
        for name in files:
            if not os.access(os.path.join(folder, name), os.R_OK):
                return os.path.join(folder, name)
    return None


def inspect_step(step_dir: str | os.PathLike) -> str | None:
    """Why a step is damaged (None: it looks intact), from its structure and JSON files alone,
    without reading any array: what Orbax itself reads before it can restore anything (a
    garbled metrics file otherwise stops a CheckpointManager from even opening)."""
    root = paths.resolve(step_dir)
    for item in (STATE, META):
        if not (root / item).is_dir():
            return f"its '{item}' item is missing"
    if not ((root / STATE / "_METADATA").exists() or (root / STATE / "manifest.ocdbt").exists()):
        return "its 'state' item has no Orbax metadata"
    for pattern in _JSON_FILES:
        folder, _, name = pattern.rpartition("/")
        base = root / folder if folder else root
        files = sorted(base.iterdir()) if name == "*" and base.is_dir() else [base / name]
        for f in files:
            if name == "*" and (f.name == "commit_success.txt" or not f.is_file()):
                continue
            if not f.exists():
                if pattern in ("meta/metadata", "state/_METADATA"):
                    return f"{pattern} is missing"
                continue
            try:
                json.loads(f.read_bytes().decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return f"{os.path.relpath(os.fspath(f), os.fspath(root))} is not valid JSON"
    return None


def read_meta(directory: str | os.PathLike, step: int) -> dict:
    """The JSON item of one step."""
    path = paths.resolve(directory) / str(step) / META
    handler = ocp.Checkpointer(ocp.JsonCheckpointHandler())
    meta = handler.restore(path, args=ocp.args.JsonRestore())
    if not isinstance(meta, dict):
        raise CheckpointNotFoundError(f"checkpoint step {step} in {directory}: meta is not a dict")
    return dict(meta)


_RETRAIN = "train again with --noresume (the damaged steps are set aside, not deleted)"


def replaced_while_read(directory: str | os.PathLike, step: int, listed: list[int]) -> bool:
    """Whether a read of `step` that failed met a running trainer's retention rather than
    damage: the step is gone, or is going (a step newer than the `listed` ones has appeared,
    and the trainer deletes a step file by file)."""
    gone = not (paths.resolve(directory) / str(step)).exists()
    return gone or max(step_dirs(directory), default=0) > max(listed, default=step)


def newest_readable(directory: str | os.PathLike, read: Callable[[int], T],
                    steps: list[int] | None = None, fix: str = _RETRAIN) -> tuple[int, T]:  # fmt: skip
    """`(step, read(step))` for the newest step that reads, skipping damaged ones (one warning
    each) and steps a running trainer deleted meanwhile.

    A running trainer's retention deletes its older steps as it saves newer ones, and a step is
    deleted file by file: a read may fail on a step that is still there, half gone. A failure is
    the step's damage only if the trainer has not moved on: where a newer step than those listed
    has appeared, the step was being replaced, and the directory is listed again (newest first),
    for as long as the trainer keeps replacing the steps being read (`REREAD_S`).

    Raises:
      CheckpointNotFoundError: no step reads (its line ends with `fix`, what the caller's
        user can do), or, beside a trainer that saves and deletes faster than a step is read,
        none stayed long enough to be read.
      BackendError: JAX's backend cannot start (not a fault of any step).
    """
    backend.check()  # a backend that cannot start fails every read: not the steps' fault
    damaged: dict[int, str] = {}
    replaced, deadline = 0, time.monotonic() + REREAD_S
    while True:
        listed = steps or step_dirs(directory)
        candidates = sorted(set(listed) - set(damaged), reverse=True)
        moved_on = False
        for step in candidates:
            step_dir = paths.resolve(directory) / str(step)
            if not step_dir.exists() or _in_progress(step_dir):
                continue  # deleted since listing (a newer step replaced it), or being written
            denied = unreadable(step_dir)
            if denied is not None:
                raise read_failure(step, directory, f"permission denied on {denied}")
            reason = inspect_step(step_dir)
            if reason is None:
                try:
                    return step, read(step)
                except Exception as e:  # noqa: BLE001  any read failure: try an older step
                    if replaced_while_read(directory, step, listed):
                        replaced, moved_on = replaced + 1, True
                        break  # being deleted by a trainer that saved a newer step: list again
                    cause = read_fault(e)  # ... unless it was no fault of the step
                    if cause is not None:
                        raise read_failure(step, directory, cause) from e
                    reason = damage_reason(e)
            damaged[step] = reason
            log.warning("skipping damaged checkpoint step %d in %s: %s", step, directory, reason)
        if not moved_on or steps is not None or time.monotonic() > deadline:
            break
    detail = "; ".join(f"step {s}: {r}" for s, r in sorted(damaged.items()))
    if replaced and not damaged:
        raise CheckpointNotFoundError(
            f"no checkpoint step in {directory} stayed long enough to be read: a running trainer "
            f"replaced each one while it was read ({replaced} tries in {REREAD_S:.0f} s); read "
            "again, or let that run keep more steps (train.keep_checkpoints) or save less often"
        )
    raise CheckpointNotFoundError(
        f"no intact checkpoint in {directory}" + (f" ({detail})" if detail else "") + f"; {fix}"
    )


class _QuietMissingMetadata(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()  # Orbax's notes on a step a reader then reports itself
        return not ("Metadata file does not exist" in message or "Failed to get item" in message)


def _strip_value_nodes(tree):
    """Saved nnx.State nodes look like {'value': array}; callers want the arrays themselves."""
    if isinstance(tree, dict):
        if set(tree) == {"value"}:
            return tree["value"]
        return {k: _strip_value_nodes(v) for k, v in tree.items()}
    return tree


def load_params(directory: str | os.PathLike, step: int) -> dict:
    """The 'params' of one step's train state as a nested dict of arrays on the default device,
    whatever mesh they were saved from; nothing else of the state is read.

    Raises:
      CheckpointNotFoundError: the step holds no params.
    """
    path = paths.resolve(directory) / str(step) / STATE
    checkpointer = ocp.PyTreeCheckpointer()
    quiet = _QuietMissingMetadata()
    logging.getLogger("absl").addFilter(quiet)
    try:
        tree = checkpointer.metadata(path).item_metadata
        if tree is None:  # Orbax logs why (quieted above) and returns nothing
            raise CheckpointNotFoundError(f"checkpoint {path}: its arrays' metadata does not read")
        if "params" not in tree:
            raise CheckpointNotFoundError(f"checkpoint {path} has no 'params' in its state")
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        saved = tree["params"]
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved
        )
        restore_args = jax.tree.map(lambda m: ocp.ArrayRestoreArgs(sharding=device), saved)
        out = checkpointer.restore(
            path,
            args=ocp.args.PyTreeRestore(
                item={"params": target},
                restore_args={"params": restore_args},
                partial_restore=True,
            ),
        )
    finally:
        logging.getLogger("absl").removeFilter(quiet)
    return _strip_value_nodes(out["params"])
