"""Ctrl-C, SIGTERM and a scheduler's SIGUSR1/2 in every launcher: each interrupts the program
where it is."""

from __future__ import annotations

import signal

# What stops a program as SIGTERM does: `kill`, `timeout`, a scheduler; and a batch scheduler's
# warning before it stops a job (SLURM --signal=USR1@90, Grid Engine -notify, LSF).
STOPPING = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class Terminated(KeyboardInterrupt):
    """SIGTERM (or one of `STOPPING`), raised where Ctrl-C's KeyboardInterrupt would be;
    `signum` says which (the exit status is 128 + signum, as a shell reports it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum, frame):
    raise Terminated(signum)


def interrupt_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM (`kill`, `timeout`, a scheduler) interrupt the program where it
    is, as a KeyboardInterrupt: what it made so far is kept as on Ctrl-C (sample prints the text
    generated; the trainer's own handlers save the step), then one `error:` line, exit 130 or 143
    (138, 140: SIGUSR1, SIGUSR2, a batch scheduler's warning; kept ignored where inherited so).

    Why: SIGTERM's default action ended the program at once (a sample's text was lost, and a
    run still setting up died without a line), and a program started in the background by a
    script inherits SIGINT ignored, which Python keeps: `kill -INT` ended train (its handler
    is its own) but not sample or evaluate. Only in the main thread (a notebook's cells call
    no `run`)."""
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in STOPPING:
            if signum == signal.SIGTERM or signal.getsignal(signum) != signal.SIG_IGN:
                signal.signal(signum, _terminate)
    except ValueError:  # not the main thread
        pass
