"""The floor any language model must beat on a split: an add-one smoothed unigram model,
reported beside every run's validation perplexity."""

from __future__ import annotations

import math

import numpy as np


def unigram_perplexity(train_ids: np.ndarray, eval_ids: np.ndarray, vocab_size: int) -> float:
    """Per-token perplexity of an add-one smoothed unigram model: the floor any LM must beat.

    Args:
      train_ids: training token stream, shape [N].
      eval_ids: evaluation token stream, shape [M].
      vocab_size: number of token ids (smoothing mass is spread over all of them).

    Returns:
      exp(mean negative log-likelihood of eval_ids); inf-free thanks to the smoothing.
    """
    train_N = np.asarray(train_ids, np.int64).reshape(-1)
    counts_V = np.bincount(train_N, minlength=vocab_size)[:vocab_size] + 1.0
    log_p_V = np.log(counts_V) - math.log(counts_V.sum())
    eval_N = np.asarray(eval_ids, np.int64).reshape(-1)
    if eval_N.size == 0:
        return float("nan")
    return float(np.exp(-log_p_V[eval_N].mean()))
