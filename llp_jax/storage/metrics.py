"""The metrics log of a workdir: JSONL + TensorBoard event files (process 0 only).

JSONL is the source of truth (greppable, read by the loss plots and the results tables); it
holds one row per step (a step's train and validation metrics are merged into it): a resumed
run first drops the rows of the steps it is about to replay, so a step that ran twice (after
kill -9) is logged once. TensorBoard event files
are written by tensorboardX, so TensorFlow is never needed. In a remote workdir (gs://...) both
are kept locally and uploaded whole at each flush (object stores cannot append).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from typing import Any, Iterator, Mapping

import jax
import numpy as np

from llp_jax import paths, strict_json


@contextlib.contextmanager
def _naming(path) -> Iterator[None]:
    """A write error of a file object carries no file name (a full disk reads "no space left on
    device", nowhere): give it the path, so the one-line error names it."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, os.fspath(path)) from None
        raise


def _to_float(value: Any) -> float | None:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return None


def _parse(lines) -> list[dict]:
    """The rows among `lines`: JSON objects with an integer step, as MetricsWriter writes them
    (its non-finite numbers, written as strings, read back as floats).
    Anything else is skipped: a half-written last line of a killed run, bytes a disk fault or
    another program left (decoded as U+FFFD), JSON that is not a row."""
    records = []
    for line in lines:
        try:
            record = strict_json.loads(line)
        except ValueError:
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, int) and not isinstance(step, bool):
            records.append(record)
    return records


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All rows of a metrics file (see `_parse` for what is skipped)."""
    return _parse(paths.resolve(path).read_bytes().decode("utf-8", "replace").splitlines())


class MetricsWriter:
    """Writes `{"step": s, "time": t, **metrics}` lines to `<logdir>/metrics.jsonl` and scalars
    to TensorBoard event files in `<logdir>`.

    Keys use a 'split/name' convention ('train/loss', 'val/loss', 'train/lr', ...) so TensorBoard
    groups them and the loss plots find them. On processes other than 0 every method is a no-op,
    so the trainer can call it unconditionally.

    Args:
      logdir: the workdir (a local folder or a URL).
      tensorboard: also write TensorBoard event files.
      resume_step: the step a resumed run continues from: rows of later steps (which the run is
        about to replay) are dropped first. None keeps every row.
      flush_secs: how often a remote log is uploaded (and at every `flush`/`close`).
    """

    def __init__(
        self,
        logdir: str | os.PathLike,
        *,
        tensorboard: bool = True,
        resume_step: int | None = None,
        jsonl_name: str = "metrics.jsonl",
        flush_secs: float = 30.0,
    ):
        self.logdir = os.fspath(paths.resolve(logdir))
        self.jsonl_path = paths.join(self.logdir, jsonl_name)
        self.active = jax.process_index() == 0
        self.remote = paths.is_url(self.logdir)
        self._flush_secs, self._last_upload = flush_secs, time.time()
        self._jsonl = self._tb = self._tb_dir = None
        self._lines: list[str] = []
        self._pending: dict[str, Any] | None = None  # the current step's row
        if not self.active:
            return
        paths.makedirs(self.logdir)
        if paths.exists(self.jsonl_path):
            kept = [r for r in read_jsonl(self.jsonl_path)
                    if resume_step is None or r.get("step", 0) <= resume_step]  # fmt: skip
            self._lines = [strict_json.dumps(r) + "\n" for r in kept]
            paths.write_text(self.jsonl_path, "".join(self._lines))
        if not self.remote:
            self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter  # noqa: PLC0415  (only where TB is wanted)

            self._tb_dir = tempfile.mkdtemp(prefix="llp_tb_") if self.remote else self.logdir
            self._tb = SummaryWriter(self._tb_dir, flush_secs=30)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Records scalar metrics for `step` (non-numeric values go to JSONL only). Writes for
        one step merge into one row, written when the next step begins or at `flush`."""
        if not self.active:
            return
        if self._pending is not None and self._pending["step"] != int(step):
            self._emit()
        if self._pending is None:
            self._pending = {"step": int(step), "time": round(time.time(), 3)}
        record = self._pending
        for key, value in metrics.items():
            number = _to_float(value)
            if number is None:
                record[key] = value if isinstance(value, (str, bool, int)) else str(value)
                continue
            record[key] = number  # a non-finite one is written as a string (strict_json)
            if self._tb is not None:
                self._tb.add_scalar(key, number, int(step))

    def _emit(self) -> None:
        line, self._pending = strict_json.dumps(self._pending) + "\n", None
        if self.remote:
            self._lines.append(line)
            if time.time() - self._last_upload > self._flush_secs:
                self.flush()
        else:
            with _naming(self.jsonl_path):
                self._jsonl.write(line)
                self._jsonl.flush()

    def flush(self) -> None:
        """Makes everything written so far durable (uploads a remote log)."""
        if not self.active:
            return
        if self._pending is not None:
            self._emit()
        if self._tb is not None:
            with _naming(self._tb_dir or self.logdir):
                self._tb.flush()
        if self.remote:
            paths.write_text(self.jsonl_path, "".join(self._lines))
            if self._tb_dir is not None:
                for name in os.listdir(self._tb_dir):
                    with open(os.path.join(self._tb_dir, name), "rb") as f:
                        paths.write_bytes(paths.join(self.logdir, name), f.read())
            self._last_upload = time.time()

    def close(self) -> None:
        """Flushes and closes everything, even after a failed write; a write error names its
        file (closing the log retries what a full disk refused, which fails again)."""
        if not self.active:
            return
        try:
            if self._tb is not None:
                with _naming(self._tb_dir or self.logdir):
                    self._tb.close()
            self.flush()
        finally:
            self._tb = None
            jsonl, self._jsonl = self._jsonl, None
            if jsonl is not None:
                with _naming(self.jsonl_path):
                    jsonl.close()  # closes the file even when its last flush fails
            if self.remote and self._tb_dir is not None:
                shutil.rmtree(self._tb_dir, ignore_errors=True)
                self._tb_dir = None

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
