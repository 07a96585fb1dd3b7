"""The base of every error a user can cause (bad config, bad data, missing checkpoint, a diverged
run). Command-line entry points catch `LLPError` and print its one-line message instead of a
traceback; anything else is a bug and keeps its traceback."""


class LLPError(Exception):
    """An error with a one-line message that names the problem and the fix."""
