"""What a workdir holds on disk and how it is read and written: Orbax checkpoints (the one owner
of their format) and the metrics log. Below training and evaluation, which both use it."""

from llp_jax.storage.checkpoints import (
    Checkpointer,
    CheckpointNotFoundError,
    Restored,
    committed_steps,
    load_params,
    read_meta,
)
from llp_jax.storage.metrics import MetricsWriter, read_jsonl

__all__ = [
    "CheckpointNotFoundError",
    "Checkpointer",
    "MetricsWriter",
    "Restored",
    "committed_steps",
    "load_params",
    "read_jsonl",
    "read_meta",
]
