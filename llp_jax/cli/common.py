"""What every absl main shares: no stray arguments, quiet logs, one-line errors, and config
paths that work from a checkout and from an installed package alike."""

import contextlib
import logging as pylogging
import os
import re
import sys

from absl import app, flags, logging

from llp_jax.errors import LLPError


class UsageError(LLPError):
    """A bad combination of flags."""


def run(main) -> None:
    """`app.run(main)` whose flag errors are one line: a config file that fails to load (a bad
    `--config=file.py:arg`, a ConfigError from the preset) otherwise prints its whole traceback."""
    app.run(main, flags_parser=_parse_flags)


def _packaged_config(argv: list[str]) -> list[str]:
    """`--config=llp_jax/configs/X.py[:arg]` names a file of the checkout; where it is not there
    (an installed llp_jax, run from any folder) it means the file inside the installed package."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for item in argv:
        match = re.match(r"^(--config=)(llp_jax/configs/[^:]+)(:.*)?$", item)
        if match and not os.path.exists(match.group(2)):
            path = os.path.join(package, match.group(2)[len("llp_jax/") :])
            item = match.group(1) + path + (match.group(3) or "")
        out.append(item)
    return out


def _parse_flags(argv):
    try:
        return flags.FLAGS(_packaged_config(argv))
    except flags.Error as e:
        sys.exit(f"error: {_last_line(e)}")


def _last_line(error: Exception) -> str:
    """The exception line of a message that may embed a traceback, without the module path."""
    line = next((x.strip() for x in reversed(str(error).splitlines()) if x.strip()), repr(error))
    return re.sub(r"^[\w.]+\.(\w+): ", r"\1: ", line)


def start(argv) -> None:
    """Rejects positional arguments and a --config file that could not be read, and, unless
    --verbosity is given, logs at WARNING (Orbax logs every file operation at INFO)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if "config" in flags.FLAGS and flags.FLAGS["config"].present:
        try:
            # config_flags defers an unreadable file to the first attribute access.
            _ = flags.FLAGS["config"].value.keys
        except OSError as e:
            sys.exit(f"error: --config: {_last_line(e)}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
        # gcsfs warns on every gs:// access without default credentials (emulators, anonymous
        # buckets) that it cannot look up the bucket type; it then works as it should.
        pylogging.getLogger("gcsfs").addFilter(
            lambda record: "Could not determine bucket type" not in record.getMessage()
        )


@contextlib.contextmanager
def one_line_errors():
    """Bad flags, config, data or checkpoint, a diverged run: `error: ...`, exit 1, no traceback."""
    try:
        yield
    except LLPError as e:
        sys.exit(f"error: {e}")
