"""A damaged checkpoint's reads that fail after the first one was caught: asyncio logs each as
"Task exception was never retrieved". The command-line tools drop those records (the step is
skipped with one warning), and only those: the records here are the real ones, from tensorstore
reads of a truncated chunk, and from ordinary failed tasks."""

from __future__ import annotations

import asyncio
import gc
import logging
import os

import numpy as np
import pytest
import tensorstore as ts

from llp_jax.cli.background_errors import _noise, _orphaned_read


def orphaned_records(*make_awaitables) -> list[logging.LogRecord]:
    """asyncio's records for tasks that failed and were dropped unretrieved."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    loop = asyncio.new_event_loop()
    try:

        async def run():
            tasks = [asyncio.ensure_future(make()) for make in make_awaitables]
            await asyncio.wait(tasks)
            del tasks  # never retrieved

        loop.run_until_complete(run())
        gc.collect()
    finally:
        loop.close()
        logger.removeHandler(handler)
    return [r for r in records if "exception was never retrieved" in r.getMessage()]


@pytest.fixture
def truncated_array(tmp_path):
    """A zarr array whose only chunk lost two thirds of its bytes, and its tensorstore spec."""
    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(tmp_path / "a")}}
    array = ts.open(spec, create=True, dtype=ts.float32, shape=[256]).result()
    array.write(np.ones(256, np.float32)).result()
    chunk = next(os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "a") for f in fs
                 if not f.startswith("."))  # fmt: skip
    with open(chunk, "r+b") as f:
        f.truncate(os.path.getsize(chunk) // 3)
    return spec


def test_tensorstore_reads_that_nobody_awaited_are_dropped(truncated_array, tmp_path):
    # Orbax wraps tensorstore's futures in tasks: their tracebacks hold no Orbax frame.
    missing = {**truncated_array, "kvstore": {"driver": "file", "path": str(tmp_path / "none")}}
    records = orphaned_records(
        lambda: ts.open(truncated_array).result().read(),  # a damaged chunk
        lambda: ts.open(missing),  # an array whose metadata is gone
    )
    assert len(records) == 2
    for record in records:
        assert "orbax" not in str(record.exc_info[2].tb_frame.f_code.co_filename)
        assert _orphaned_read(record), record.exc_info[1]


def test_other_orphaned_failures_still_print(tmp_path):
    async def fails():
        raise ValueError("something else went wrong")

    async def write_fails():  # a write's error text, even tensorstore's, is never dropped
        raise ValueError('DATA_LOSS: Error writing local file "/x/d/0": ...')

    records = orphaned_records(fails, write_fails)
    assert len(records) == 2
    assert not any(_orphaned_read(r) for r in records)


def test_unraisable_read_errors_are_dropped_and_others_print(truncated_array):
    """A trainer deleting the step an evaluation reads: the step's other reads fail in Orbax
    coroutines that are collected unawaited, which Python reports as 'Exception ignored in:
    <coroutine ...>' with the read's traceback (seen in a suite run: the evaluation itself fell
    back to the older step, rc 0). The CLIs' unraisable hook drops those (`_noise`) and still
    prints any other unraisable error, a failed write's included."""
    try:
        ts.open(truncated_array).result().read().result()
    except Exception as e:  # noqa: BLE001  the real read error, with its traceback
        read_error = e
    assert _noise(read_error)
    assert _noise(RuntimeError("Event loop is closed"))
    assert not _noise(ValueError("something else went wrong"))
    assert not _noise(ValueError('DATA_LOSS: Error writing local file "/x/d/0": ...'))
