"""SIGTERM (preemption), SIGINT (Ctrl-C) and SIGHUP (the terminal closed: an SSH connection
dropped, a terminal window shut) become a flag the training loop checks after each step: the
step finishes, is saved, and the run ends cleanly (the CLI exits 0 after SIGTERM, 130 after
Ctrl-C, 129 after a hangup). A second Ctrl-C aborts at once, as a terminal user expects: the
first one put the default action back, and the checkpoints on disk are whole whatever moment it
lands (Orbax writes a step into a temporary folder and renames it when complete).

Why SIGHUP: its default action ended the run at once, losing every step since the last
checkpoint. After a hangup the terminal is gone and writing to it fails (EIO), so the handler
points the standard streams that were a terminal at /dev/null; the run saves and stops quietly.
Under `nohup` (SIGHUP ignored when the run starts) a hangup stays ignored and the run goes on.

SIGUSR1 and SIGUSR2 are what batch schedulers send as a warning before they stop a job: SLURM's
`--signal=[B:]USR1@90` before the time limit, Grid Engine's `-notify` (SIGUSR1 before a suspend,
SIGUSR2 before a kill), LSF's warning action. Their default action ended the run at once; now
they save and stop as SIGTERM does (exit 0: resubmit the job to resume).
"""

from __future__ import annotations

import os
import signal
import stat
import sys

_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGHUP: "SIGHUP",
          signal.SIGUSR1: "SIGUSR1", signal.SIGUSR2: "SIGUSR2"}  # fmt: skip
# Signals a run started with ignored stays deaf to, as asked (nohup; a scheduler's wrapper).
_KEPT_IGNORED = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
# The exit status of a program whose run saved and stopped on the signal (SIGTERM: 0, a
# preemption handled as asked).
EXIT_CODES = {"SIGINT": 130, "SIGHUP": 129}


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after its step was saved. `train_and_evaluate` raises it rather
    than return as if the run had finished: a notebook cell (and "Run all") or a script stops as
    the user asked, instead of going on to evaluate a half-trained model. Rerunning resumes from
    the saved step; `progress` is the training loop's."""

    def __init__(self, step: int, workdir: str, progress: dict):
        super().__init__(f"Ctrl-C: saved step {step} in {workdir}; train again to resume from it")
        self.step, self.workdir, self.progress = step, workdir, progress


class Interruptions:
    """`with Interruptions() as stop:` ... `stop.requested` is None or the signal's name.

    Handlers are installed only in the main thread (elsewhere, e.g. a notebook worker thread,
    signals keep their usual meaning) and restored on exit.
    """

    def __init__(self):
        self.requested: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "Interruptions":
        for signum in _NAMES:
            if signum in _KEPT_IGNORED and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # e.g. started under nohup: a hangup is to be ignored, as asked
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread
                break
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = self.requested or _NAMES[signum]
        if signum == signal.SIGHUP:
            _leave_terminal()
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the second Ctrl-C: abort at once
            print(
                "\nCtrl-C: saving after this step (press Ctrl-C again to abort at once)",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def _leave_terminal() -> None:
    """Points stdin, stdout and stderr at /dev/null where they were a terminal (a character
    device; files and pipes keep their output), so nothing written after a hangup fails."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            try:
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(devnull, fd)
            except OSError:
                continue  # closed already
    finally:
        os.close(devnull)
