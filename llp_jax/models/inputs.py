"""What a model takes: token ids, an integer array whose values lie in [0, vocab_size); and the
random keys of dropout and sampling (a key or an int seed).

Checked where tokens come in from a user (a model's `__call__`, `stream`, perplexity, generation),
because JAX itself would not complain: a float or wrongly ranked array fails deep inside an einsum,
and an id outside the vocabulary gathers NaN embeddings (`jnp.take` fills out-of-range rows), so a
tokenizer larger than the model yields NaN logits and a perplexity that is silently wrong.
Inside `jit` the values are tracers: only the rank and dtype are checked there (free, at trace
time); the range check runs on concrete arrays (also those a traced function closes over), one
reduction.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np

from llp_jax.errors import InputError

_LAYOUT = {1: "int [N] (one token stream)", 2: "int [batch, length]"}
_HINT = {1: "; pass one stream (a split's tokens, not a batch of windows)",
         2: "; add the batch axis with tokens[None]"}  # fmt: skip


def as_tokens(tokens, vocab_size: int, *, what: str = "tokens", rank: int = 2):
    """`tokens` as an array (a list becomes a numpy array), checked by `check_tokens`."""
    if isinstance(tokens, str) or (isinstance(tokens, (list, tuple)) and tokens
                                   and isinstance(tokens[0], str)):  # fmt: skip
        one = "tokenizer.encode(text)" if rank == 1 else "[tokenizer.encode(text)]"
        raise InputError(f"{what} is text; pass its token ids: {one} (a loaded workdir's "
                         "tokenizer: llp_jax.load_model(workdir).tokenizer)")  # fmt: skip
    if not hasattr(tokens, "shape"):
        try:
            tokens = np.asarray(tokens)
        except (TypeError, ValueError) as e:  # ragged lists
            why = _ragged(tokens) or str(e)
            if rank == 1 and why != str(e):  # a list of windows where one stream belongs
                why = f"got {len(tokens)} rows of different lengths{_HINT[1]}"
            raise InputError(f"{what} must be {_LAYOUT[rank]}: {why}") from None
        if tokens.size == 0:  # np.asarray([]) is float64
            tokens = tokens.astype(np.int32)
    check_tokens(tokens, vocab_size, what=what, rank=rank)
    return tokens


def _ragged(rows) -> str:
    """Says which rows of a list differ in length ('' if that is not what is wrong)."""
    try:
        lengths = [len(row) for row in rows]
    except TypeError:
        return ""
    if len(set(lengths)) < 2:
        return ""
    shown = ", ".join(map(str, lengths[:8])) + (", ..." if len(lengths) > 8 else "")
    return (
        f"its rows differ in length ({shown}), and one array holds rows of one length; "
        "give each length its own call"
    )


def check_tokens(tokens, vocab_size: int, *, what: str = "tokens", rank: int = 2) -> None:
    """Raises a one-line InputError unless `tokens` is an integer array of `rank` dimensions with
    every (concrete) id in [0, vocab_size)."""
    shape, dtype = getattr(tokens, "shape", None), getattr(tokens, "dtype", None)
    if shape is None or dtype is None:
        raise InputError(f"{what} must be {_LAYOUT[rank]}, not a {type(tokens).__name__}")
    if len(shape) != rank:
        hint = _HINT[rank] if len(shape) in (1, 2) else ""
        raise InputError(f"{what} must be {_LAYOUT[rank]}, got shape {tuple(shape)}{hint}")
    if not np.issubdtype(dtype, np.integer):
        raise InputError(f"{what} must be integer token ids, got dtype {dtype}; e.g. "
                         f"tokens.astype('int32') if they are whole numbers")  # fmt: skip
    if isinstance(tokens, jax.core.Tracer) or 0 in shape:
        return
    if not getattr(tokens, "is_fully_addressable", True):  # a multi-host global array
        return
    with jax.ensure_compile_time_eval():  # a concrete array captured inside a jit trace
        low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise InputError(
            f"token id {bad} in {what} is outside the model's vocabulary [0, {vocab_size}): tokenize "
            f"with the tokenizer the model was trained with (its vocab_size is {vocab_size})"
        )


def as_model(model):
    """The zoo model itself, also from what holds one in `.model` (`load_model`'s result)."""
    inner = getattr(model, "model", None)
    if not hasattr(model, "for_inference") and hasattr(inner, "for_inference"):
        model = inner
    if not hasattr(model, "for_inference"):
        raise InputError(f"model must be a zoo model (llp_jax.build(cfg), or "
                         f"llp_jax.load_model(workdir).model), not a {type(model).__name__}")  # fmt: skip
    return model


def check_seed(seed, *, name: str = "seed") -> int:
    """`seed` as a Python int, or one InputError line where it is not a 64-bit integer (JAX
    raised a bare OverflowError past int64)."""
    if not -(2**63) <= int(seed) < 2**64:
        raise InputError(f"{name}={seed} must be a 64-bit integer (from -2**63 to 2**64 - 1)")
    return int(seed)


def seed_key(seed, *, name: str = "seed") -> jax.Array:
    """The PRNG key of an int seed, all 64 bits of it: the key JAX makes with x64 on.

    Without x64, `jax.random.key` keeps only a seed's low 32 bits, so seeds 0 and 2**32 (and -1
    and 2**32 - 1) gave one key, and two runs meant to differ were one run. The seeds below 2**32
    keep the keys they always had; a negative seed is its 64-bit two's complement, as in numpy.
    Works inside `jit` (the key is a constant)."""
    hi, lo = divmod(check_seed(seed, name=name) % 2**64, 2**32)
    if jax.config.jax_default_prng_impl == "threefry2x32":  # JAX's own 64-bit seeding
        return jax.random.wrap_key_data(np.array([hi, lo], np.uint32))
    key = jax.random.key(lo)  # another implementation: the high half folded in
    return key if hi == 0 else jax.random.fold_in(key, hi)


def as_rng(rng, *, optional: bool = False, name: str = "rng"):
    """A PRNG key from a key or an int seed (numpy integers too), or None where `optional`; one
    InputError line naming the argument for anything else (a string reached `jax.random`, nnx or
    jit's argument check)."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return seed_key(rng, name=name)
    if isinstance(rng, (jax.Array, np.ndarray)) or (rng is None and optional):
        return rng
    either = " (or None)" if optional else ""
    raise InputError(f"{name}={rng!r} must be a PRNG key or an int seed{either}")


def check_targets(targets_BxP, tokens_shape, start: int, vocab_size: int) -> None:
    """One line where a loss's targets are not the [B, P] ids of the positions a model scores,
    start..T-1 (a latent model's last l, not all T: the shapes failed to reshape deep inside the
    loss), or not token ids (`check_tokens`: an id past the vocabulary was a silent NaN)."""
    B, T = tokens_shape
    want = (B, T - start)
    if tuple(getattr(targets_BxP, "shape", ())) != want:
        got = getattr(targets_BxP, "shape", type(targets_BxP).__name__)
        raise InputError(
            f"targets must be int [{want[0]}, {want[1]}], the next tokens of the positions "
            f"{start}..{T - 1} this model scores (window[:, 1 + model.loss_start({T}):] of a "
            f"window of {T} + 1 tokens), got {got}"
        )
    check_tokens(targets_BxP, vocab_size, what="targets")
