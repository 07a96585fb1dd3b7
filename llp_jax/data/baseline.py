"""The floor any language model must beat on a split: an add-one smoothed unigram model,
reported beside every run's validation perplexity."""

from __future__ import annotations

import math

import numpy as np

from llp_jax.errors import InputError


def unigram_perplexity(train_ids: np.ndarray, eval_ids: np.ndarray, vocab_size: int) -> float:
    """Per-token perplexity of an add-one smoothed unigram model: the floor any LM must beat.

    Args:
      train_ids: training token stream, shape [N].
      eval_ids: evaluation token stream, shape [M].
      vocab_size: number of token ids (smoothing mass is spread over all of them).

    Returns:
      exp(mean negative log-likelihood of eval_ids); inf-free thanks to the smoothing.

    Raises:
      InputError: an id outside [0, vocab_size) in either stream.
    """
    train_N = _integers(train_ids)
    eval_N = _integers(eval_ids)
    for name, ids_N in (("train_ids", train_N), ("eval_ids", eval_N)):
        if ids_N.size and (ids_N.min() < 0 or ids_N.max() >= vocab_size):
            raise InputError(
                f"{name} holds ids in [{ids_N.min()}, {ids_N.max()}], outside the vocabulary "
                f"[0, {vocab_size}); give the vocab_size of the tokenizer that made them"
            )
    counts_V = _counts(train_N, vocab_size) + 1.0
    log_p_V = np.log(counts_V) - math.log(counts_V.sum())
    if eval_N.size == 0:
        return float("nan")
    return float(np.exp(-log_p_V[eval_N].mean()))


def _integers(ids) -> np.ndarray:
    """ids as a flat integer array, in their own dtype: a training stream as int64 was a copy
    twice its int32 size (1.2 GB for a 150 MB byte-level corpus)."""
    ids_N = np.asarray(ids).reshape(-1)
    return ids_N if np.issubdtype(ids_N.dtype, np.integer) else ids_N.astype(np.int64)


def _counts(ids_N: np.ndarray, vocab_size: int, chunk: int = 1 << 22) -> np.ndarray:
    """np.bincount(ids_N, minlength=vocab_size)[:vocab_size], a chunk at a time (bincount
    copies its input to int64)."""
    counts_V = np.zeros(vocab_size, np.int64)
    for start in range(0, ids_N.size, chunk):
        counts_V += np.bincount(ids_N[start : start + chunk], minlength=vocab_size)[:vocab_size]
    return counts_V
