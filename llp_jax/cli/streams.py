"""The launchers' standard streams: present, encodable, and never the reason a run dies.

A program's stdout is a log or a report; the run's results are its files (checkpoints,
metrics.jsonl, summary.json, eval_*.json, results pages). So what goes wrong with stdout must not
cost the run:
  * a closed descriptor (`cmd >&- 2>&-`, some daemons): /dev/null takes its place
    (`standard_streams`), before any file is opened that could take descriptor 1 or 2 and receive
    a C++ library's log lines;
  * characters its encoding cannot write (PYTHONIOENCODING=ascii, a Latin-1 locale): backslash
    escapes (`encodable_output`);
  * a write that fails (`> train.log` or `2> err.log` on a disk that fills up, an I/O error on a
    network mount): one warning on the other stream, the rest of that stream's output dropped,
    the program goes on to its end and then exits 1 with an `error:` line (`OutputGuard`). A
    closed pipe on stdout (`| head`) still ends the program quietly (BrokenPipeError, handled
    by `common.run`).

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
    _quiet(sys.stdout)


def _quiet(stream) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class OutputGuard:
    """`sys.stdout` or `sys.stderr` that survives a failing write: the first OSError warns once
    on the other stream and sends the rest of the output to /dev/null (`lost` keeps the reason;
    C++ libraries writing to the descriptor land there too). A closed pipe on stdout is not
    caught (`| head` ends the program); on stderr it is (its reader is a log, not the user).
    Everything else is the wrapped stream's."""

    def __init__(self, stream, name: str):
        self._stream = stream
        self.name = name
        self.lost: str | None = None
        self.mid_line = False  # the last text written did not end its line (a streamed sample)

    def write(self, text: str) -> int:
        if text:
            self.mid_line = not text.endswith("\n")
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
        closed_pipe = isinstance(error, BrokenPipeError) or error.errno == errno.EPIPE
        if closed_pipe and self.name == "stdout":
            raise error
        if self.lost is None:
            self.lost = (error.strerror or str(error)).lower()
            other = sys.stderr if self.name == "stdout" else sys.stdout
            _warn(other, f"warning: {self.name} cannot be written ({self.lost}); its output is "
                         "dropped from here on and the program goes on (its files are written "
                         "as usual)")  # fmt: skip
        _quiet(self._stream)
        try:
            self._stream.flush()  # what was buffered, now into /dev/null
        except OSError:
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def guard_output() -> tuple[OutputGuard, OutputGuard]:
    """Installs an `OutputGuard` as `sys.stdout` and as `sys.stderr` (once each); returns both."""
    for name in ("stdout", "stderr"):
        if not isinstance(getattr(sys, name), OutputGuard):
            setattr(sys, name, OutputGuard(getattr(sys, name), name))
    return sys.stdout, sys.stderr


def lost_output() -> str | None:
    """The `error:` line for output lost to a failing stream (None if none was); written on
    stdout where stderr is the one that failed."""
    for guard in (sys.stdout, sys.stderr):
        if isinstance(guard, OutputGuard) and guard.lost:
            return (f"error: {guard.name} could not be written ({guard.lost}), so output was "
                    "lost from then on; the program itself ran to its end")  # fmt: skip
    return None


def _warn(stream, line: str) -> None:
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError, AttributeError):
        pass  # that stream cannot be written either: nowhere left to say it


def break_stdout_line() -> str:
    """ "\n" where stdout is mid-line and goes where stderr goes (a terminal, `2>&1`): a warning
    on stderr then starts a line of its own instead of landing inside a streamed sample's text
    ("...where livedwarning: ..."); '' elsewhere, so stdout's own text is never changed."""
    out, err = sys.stdout, sys.stderr
    if not getattr(out, "mid_line", False):
        return ""
    try:
        out.flush()
        same = os.path.samestat(os.fstat(out.fileno()), os.fstat(err.fileno()))
    except (OSError, ValueError, AttributeError):
        return ""
    if same:
        out.mid_line = False
    return "\n" if same else ""
