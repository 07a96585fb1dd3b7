"""llp_jax's own warnings on the command line: `warning: ...` lines, in the style of the
launchers' `error:` and `note:` lines.

Why: through absl they printed as `W1207 15:24:40.225484 139681021168512 attention.py:48]
attention: ...`, and one logged during the first training step landed on the progress bar's
line. Here they go through tqdm, which clears a bar on the terminal, prints the line and draws the
bar again below it. Other libraries' records, and llp_jax's below WARNING (`--verbosity`), keep
absl's format.
"""

from __future__ import annotations

import logging
import sys

from absl import logging as absl_logging

from llp_jax.cli import streams


class _WarningLines(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{record.levelname.lower()}: {record.getMessage()}"
        except Exception:  # a bad format string: logging's own report
            self.handleError(record)
            return
        from tqdm import tqdm  # noqa: PLC0415  (imported by the launchers anyway)

        try:
            tqdm.write(streams.break_stdout_line() + line, file=sys.stderr)
        except (OSError, ValueError):  # stderr gone: streams.py decides what that costs
            pass


def _ours(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] == "llp_jax" and record.levelno >= logging.WARNING


def plain_warnings() -> None:
    """Installs the `warning:` lines (once) and keeps absl from printing the same records."""
    logger = logging.getLogger("llp_jax")
    if any(isinstance(h, _WarningLines) for h in logger.handlers):
        return
    logger.addHandler(_WarningLines())
    absl_logging.get_absl_handler().addFilter(lambda record: not _ours(record))
