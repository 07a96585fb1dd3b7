"""Damaged checkpoint steps, set aside by the trainer that owns the workdir.

A step that fails inspection or restore is moved out of Orbax's sight into
`<workdir>/damaged_checkpoints/<step>-<UTC stamp>`: kept (never deleted) for a post-mortem, out
of the way of every later reader, and the run can write that step again. Only process 0 moves
files; every process records the same steps, and `sync` keeps a multi-host run in step.
"""

from __future__ import annotations

import datetime
import logging

import jax
from etils import epath

from llp_jax import paths

log = logging.getLogger(__name__)

DAMAGED = "damaged_checkpoints"  # beside checkpoints/: the steps a trainer set aside


def set_aside(directory: epath.Path, step: int, reason: str) -> None:
    """Moves `directory/<step>` to `directory/../damaged_checkpoints/<step>-<stamp>`."""
    target = directory.parent / DAMAGED
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log.warning("damaged checkpoint step %d in %s (%s): set aside in %s",
                step, directory, reason, target)  # fmt: skip
    if jax.process_index() == 0:
        paths.move(directory / str(step), target / f"{step}-{stamp}")


def sync(name: str) -> None:
    """All processes of a multi-host run past this point (a no-op on one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # noqa: PLC0415

        multihost_utils.sync_global_devices(name)
