"""The one error type of evaluation and generation: a user's choice that cannot work."""

from llp_jax.errors import LLPError


class EvaluationError(LLPError, ValueError):
    """A bad evaluation or generation request (protocol, stride, decoder, checkpoint); the message
    is one line naming the problem and the fix."""
