"""The launchers' standard streams: present, encodable, and never the reason a run dies.

A program's stdout is a log or a report; the run's results are its files (checkpoints,
metrics.jsonl, summary.json, eval_*.json, results pages). So what goes wrong with stdout must not
cost the run:
  * a closed descriptor (`cmd >&- 2>&-`, some daemons): /dev/null takes its place
    (`standard_streams`), before any file is opened that could take descriptor 1 or 2 and receive
    a C++ library's log lines;
  * characters its encoding cannot write (PYTHONIOENCODING=ascii, a Latin-1 locale): backslash
    escapes (`encodable_output`);
  * a write that fails (`> train.log` on a disk that fills up, an I/O error on a network mount):
    one warning on stderr, the rest of the output dropped, the program goes on to its end and then
    exits 1 with an `error:` line (`OutputGuard`). A closed pipe (`| head`) still ends the program
    quietly (BrokenPipeError, handled by `common.run`).

Only the standard library here: `start.py` calls `standard_streams` before anything heavy loads.
"""

from __future__ import annotations

import errno
import os
import sys

_STANDARD = ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w"))


def standard_streams() -> None:
    """Points a closed stdin, stdout or stderr at /dev/null.

    Why: Python leaves `sys.stdout` None there, and the first flush or error line raised an
    AttributeError traceback; worse, the next file opened takes the free descriptor, so a C++
    library writing its log to descriptor 2 (XLA, absl) would write into a checkpoint or
    metrics file."""
    for fd, name, mode in _STANDARD:
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))


def encodable_output() -> None:
    """Characters stdout's encoding cannot write print as backslash escapes instead of ending
    the program in a UnicodeEncodeError (a sample or a path holding 'é' or U+FFFD). stderr does
    so already."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


def quiet_stdout() -> None:
    """Points stdout's descriptor at /dev/null, so that no later flush (the interpreter's last
    one included) can fail again; what is still buffered goes there."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class OutputGuard:
    """`sys.stdout` that survives a failing write: the first OSError other than a closed pipe
    warns once on stderr and sends the rest of the output to /dev/null (`lost` keeps the
    reason). Everything else is the wrapped stream's."""

    def __init__(self, stream):
        self._stream = stream
        self.lost: str | None = None

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as e:
            self._fail(e)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            self._fail(e)

    def _fail(self, error: OSError) -> None:
        if isinstance(error, BrokenPipeError) or error.errno == errno.EPIPE:
            raise error
        if self.lost is None:
            self.lost = (error.strerror or str(error)).lower()
            _warn(f"warning: stdout cannot be written ({self.lost}); its output is dropped "
                  "from here on and the program goes on (its files are written as usual)")  # fmt: skip
        quiet_stdout()
        try:
            self._stream.flush()  # what was buffered, now into /dev/null
        except OSError:
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def guard_stdout() -> OutputGuard:
    """Installs an `OutputGuard` as `sys.stdout` (once) and returns it."""
    if not isinstance(sys.stdout, OutputGuard):
        sys.stdout = OutputGuard(sys.stdout)
    return sys.stdout


def _warn(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # stderr cannot be written either: nowhere left to say it
