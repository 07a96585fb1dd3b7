"""SIGTERM (preemption) and SIGINT (Ctrl-C) become a flag the training loop checks after each
step: the step finishes, is saved, and the run ends cleanly (the CLI exits 0 after SIGTERM, 130
after Ctrl-C). A second Ctrl-C aborts at once, as a terminal user expects: the first one put the
default action back, and the checkpoints on disk are whole whatever moment it lands (Orbax
writes a step into a temporary folder and renames it when complete).
"""

from __future__ import annotations

import signal
import sys

_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}


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
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread
                break
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = self.requested or _NAMES[signum]
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
