"""The metrics log of a workdir: JSONL + TensorBoard event files (process 0 only).

JSONL is the source of truth (greppable, read by the loss plots and the results tables);
TensorBoard event files are written by tensorboardX, so TensorFlow is never needed.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import jax
import numpy as np


def _to_float(value: Any) -> float | None:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return None


class MetricsWriter:
    """Appends `{"step": s, "time": t, **metrics}` lines to `<logdir>/metrics.jsonl` and scalars
    to TensorBoard event files in `<logdir>`.

    Keys use a 'split/name' convention ('train/loss', 'val/loss', 'train/lr', ...) so TensorBoard
    groups them and `plot_losses` finds them. On processes other than 0 every method is a no-op,
    so the trainer can call it unconditionally.
    """

    def __init__(
        self,
        logdir: str | os.PathLike,
        *,
        tensorboard: bool = True,
        jsonl_name: str = "metrics.jsonl",
    ):
        self.logdir = os.fspath(logdir)
        self.jsonl_path = os.path.join(self.logdir, jsonl_name)
        self.active = jax.process_index() == 0
        self._jsonl = None
        self._tb = None
        if not self.active:
            return
        os.makedirs(self.logdir, exist_ok=True)
        # Append, so a resumed run continues the same file (its steps simply go on).
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter  # imported lazily: optional at read time

            self._tb = SummaryWriter(self.logdir, flush_secs=30)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Records scalar metrics for `step` (non-numeric values go to JSONL only)."""
        if not self.active:
            return
        record: dict[str, Any] = {"step": int(step), "time": round(time.time(), 3)}
        for key, value in metrics.items():
            number = _to_float(value)
            if number is None:
                record[key] = value if isinstance(value, (str, bool, int)) else str(value)
                continue
            record[key] = number if math.isfinite(number) else str(number)
            if self._tb is not None:
                self._tb.add_scalar(key, number, int(step))
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def flush(self) -> None:
        if self.active and self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if not self.active:
            return
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All records of a metrics file (blank or half-written trailing lines are skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
