"""The errors a user can cause (bad config, bad data, missing checkpoint, a diverged run).

Command-line entry points catch `LLPError` and print its one-line message instead of a
traceback; anything else is a bug and keeps its traceback.
"""

import errno

# A write the user's storage refused (a full disk, a quota, a permission, a read-only folder):
# reported in one line naming the file, wherever a library raised it.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM})


class LLPError(Exception):
    """An error with a one-line message that names the problem and the fix."""

    def __init__(self, message: str = ""):
        super().__init__(" ".join(str(message).split()))  # one line, whatever the caller wrote


class ConfigError(LLPError, ValueError):
    """A bad configuration value: the message names the field, the value and the constraint."""


class InputError(LLPError, ValueError):
    """Tokens a model cannot take: the wrong rank or dtype, or ids outside its vocabulary."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to `limit` characters ('' if it has none):
    what a one-line error quotes of a cause raised deep inside a library."""
    return (str(error).splitlines() or [""])[0][:limit]
