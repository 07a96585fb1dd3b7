"""What a workdir holds on disk and how it is read and written: Orbax checkpoints (the one owner
of their format), the metrics log and the workdir's lock. Below training and evaluation, which
both use it."""

from llp_jax.storage.checkpoints import Checkpointer, Restored
from llp_jax.storage.faults import (
    CheckpointReadError,
    CheckpointWriteError,
    describe_cause,
    is_storage_fault,
)
from llp_jax.storage.metrics import MetricsWriter, read_jsonl
from llp_jax.storage.steps import (
    CheckpointNotFoundError,
    committed_steps,
    inspect_step,
    load_params,
    newest_readable,
    no_checkpoint,
    read_meta,
    replaced_while_read,
    step_dirs,
)
from llp_jax.storage.workdir import WorkdirBusyError, WorkdirError, WorkdirLock, set_aside

__all__ = [
    "CheckpointNotFoundError",
    "CheckpointReadError",
    "CheckpointWriteError",
    "Checkpointer",
    "MetricsWriter",
    "Restored",
    "WorkdirBusyError",
    "WorkdirError",
    "WorkdirLock",
    "committed_steps",
    "describe_cause",
    "inspect_step",
    "is_storage_fault",
    "load_params",
    "newest_readable",
    "no_checkpoint",
    "read_jsonl",
    "read_meta",
    "replaced_while_read",
    "set_aside",
    "step_dirs",
]
