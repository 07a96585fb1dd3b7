"""What every absl main in experiments/ shares: no stray arguments, quiet logs, one-line errors."""

import contextlib
import sys

from absl import app, flags, logging

from llp_jax.errors import LLPError


def start(argv) -> None:
    """Rejects positional arguments and, unless --verbosity is given, logs at WARNING (Orbax logs
    every file operation at INFO)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


@contextlib.contextmanager
def one_line_errors():
    """Bad flags, config, data or checkpoint, a diverged run: `error: ...`, exit 1, no traceback."""
    try:
        yield
    except LLPError as e:
        sys.exit(f"error: {e}")
