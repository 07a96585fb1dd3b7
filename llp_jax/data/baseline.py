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
    train_N = np.asarray(train_ids, np.int64).reshape(-1)
    eval_N = np.asarray(eval_ids, np.int64).reshape(-1)
    for name, ids_N in (("train_ids", train_N), ("eval_ids", eval_N)):
        if ids_N.size and (ids_N.min() < 0 or ids_N.max() >= vocab_size):
            raise InputError(
                f"{name} holds ids in [{ids_N.min()}, {ids_N.max()}], outside the vocabulary "
                f"[0, {vocab_size}); give the vocab_size of the tokenizer that made them"
            )
    counts_V = np.bincount(train_N, minlength=vocab_size)[:vocab_size] + 1.0
    log_p_V = np.log(counts_V) - math.log(counts_V.sum())
    if eval_N.size == 0:
        return float("nan")
    return float(np.exp(-log_p_V[eval_N].mean()))
