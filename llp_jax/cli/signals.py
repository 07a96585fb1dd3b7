"""Ctrl-C and SIGTERM in every launcher: both interrupt the program where it is."""

from __future__ import annotations

import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""


def _terminate(signum, frame):
    raise Terminated("SIGTERM")


def interrupt_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM (`kill`, `timeout`, a scheduler) interrupt the program where it
    is, as a KeyboardInterrupt: what it made so far is kept as on Ctrl-C (sample prints the text
    generated; the trainer's own handlers save the step), then one `error:` line, exit 130 or 143.

    Why: SIGTERM's default action ended the program at once (a sample's text was lost, and a
    run still setting up died without a line), and a program started in the background by a
    script inherits SIGINT ignored, which Python keeps: `kill -INT` ended train (its handler
    is its own) but not sample or evaluate. Only in the main thread (a notebook's cells call
    no `run`)."""
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        pass
