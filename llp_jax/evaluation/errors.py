"""The one error type of evaluation and generation (a user's choice that cannot work), and the
one check of the counts they take (windows, strides, batch sizes)."""

import numbers
from collections.abc import Iterable

from llp_jax.errors import LLPError


class EvaluationError(LLPError, ValueError):
    """A bad evaluation or generation request (protocol, stride, decoder, checkpoint); the message
    is one line naming the problem and the fix."""


def check_counts(counts: Iterable[tuple[str, object, int]], *, prefix: str = "",
                 default: str = "", required: tuple[str, ...] = ()) -> None:  # fmt: skip
    """One-line EvaluationError for the first (name, value, low) whose value is not an int >= low;
    None passes (the caller's default) unless the name is `required`. `prefix` '--' names flags,
    `default` says what None means."""
    for name, value, low in counts:
        optional = name not in required
        if value is None and optional:
            continue
        bound = f">= {low}{default if optional else ''}"
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise EvaluationError(f"{prefix}{name}={value!r} must be an int {bound}")
        if value < low:
            raise EvaluationError(f"{prefix}{name}={value!r} must be {bound}")
