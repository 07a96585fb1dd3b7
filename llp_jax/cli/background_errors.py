"""Errors the launchers' background threads and collected coroutines would print beside the
one `error:` line the main thread reports: storage faults in Orbax's writer threads, and a
damaged (or deleted) checkpoint step's other reads failing after the first failure was caught.
`quiet()` drops those and lets every other one print."""

from __future__ import annotations

import logging as pylogging
import re
import sys

_TENSORSTORE_READ = re.compile(r"[A-Z_]+: Error (reading|opening)")  # its status, then the read


def _orphaned_read(record: pylogging.LogRecord) -> bool:
    """asyncio's "exception was never retrieved" for a checkpoint read: a damaged step's other
    arrays fail after the first failure has already been caught (the step is set aside or
    skipped, with one warning); their traceback is noise."""
    if record.name != "asyncio" or "exception was never retrieved" not in record.getMessage():
        return False
    return record.exc_info is not None and _read_error(record.exc_info[1])


def _read_error(error: BaseException | None) -> bool:
    """A checkpoint read's error, raised in a task nobody awaits any more. Such a task is either
    Orbax's own coroutine or a tensorstore future that Orbax wrapped in a task
    (`_wrap_awaitable`: no Orbax frame in its traceback, only tensorstore's error, e.g.
    'OUT_OF_RANGE: Error opening "zarr" driver: Error reading ...'). A failed write is never
    one (storage faults have their own filter)."""
    if error is None or "Error writing" in str(error):
        return False
    if _TENSORSTORE_READ.match(str(error)):
        return True
    tb = error.__traceback__
    while tb is not None:
        if "orbax" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _noise(error: BaseException | None) -> bool:
    """An unraisable error of a checkpoint read already dealt with: tensorstore's callback
    finding Orbax's event loop closed, or a read's coroutine collected unawaited."""
    if isinstance(error, RuntimeError) and "Event loop is closed" in str(error):
        return True
    return _read_error(error)


def quiet() -> None:
    """Storage faults also surface in Orbax's background threads, which would print (and log)
    their own tracebacks before the main thread reports the fault in one line
    (CheckpointWriteError); and
    when a damaged step's read fails (or a trainer deletes the step being read), tensorstore's
    pending callbacks find Orbax's event loop closed, and the step's other reads fail in
    coroutines collected unawaited (unraisable errors). These are dropped; anything else prints
    as usual."""
    import threading  # noqa: PLC0415

    default_thread_hook, default_unraisable = threading.excepthook, sys.unraisablehook

    from llp_jax.storage.faults import is_storage_fault  # noqa: PLC0415  (the package imports jax)

    def thread_hook(args):
        if args.exc_value is not None and is_storage_fault(args.exc_value):
            return  # the main thread reports it (Checkpointer.check / wait_until_finished)
        default_thread_hook(args)

    def unraisable(info):
        if not _noise(info.exc_value):
            default_unraisable(info)

    threading.excepthook, sys.unraisablehook = thread_hook, unraisable

    def storage_record(record: pylogging.LogRecord) -> bool:  # Orbax / asyncio log them too
        error = record.exc_info[1] if record.exc_info else None
        return not (
            (error is not None and is_storage_fault(error))
            or any(m in record.getMessage() for m in ("RESOURCE_EXHAUSTED", "No space left"))
            or _orphaned_read(record)
        )

    for name in ("absl", "asyncio"):
        pylogging.getLogger(name).addFilter(storage_record)
    # gcsfs logs each failed request's traceback, then raises the error to its caller, which
    # reports it in one line (paths.check_client: an unreachable store, access denied).
    pylogging.getLogger("gcsfs").addFilter(
        lambda r: not any(m in r.getMessage() for m in ("out of retries", "non-retriable"))
    )
