"""The unigram baseline beside every run's perplexity: its value, its one-line errors, and its
counts made a chunk at a time in the stream's own dtype."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from llp_jax.data.baseline import unigram_perplexity
from llp_jax.errors import InputError


def test_unigram_perplexity():
    # Uniform training counts: perplexity equals the vocabulary size.
    assert unigram_perplexity(np.arange(10), np.array([3, 4, 5]), 10) == pytest.approx(10.0)
    # Add-one smoothing: token 0 seen 8 times in 8 tokens, vocab 2 -> p(0) = 9/10, p(1) = 1/10.
    ppl = unigram_perplexity(np.zeros(8, np.int32), np.array([0, 1]), 2)
    assert ppl == pytest.approx(math.exp(-(math.log(0.9) + math.log(0.1)) / 2))
    assert math.isnan(unigram_perplexity(np.zeros(3), np.zeros(0, np.int32), 4))


@pytest.mark.parametrize(
    "train,evaluated,fragment",
    [([0, 1, 4], [1], "train_ids holds ids in [0, 4]"), ([0, -1], [1], "train_ids holds ids in [-1, 0]"),
     ([0, 1], [3, 9], "eval_ids holds ids in [3, 9]"), ([0, 1], [-2], "eval_ids")],
)  # fmt: skip
def test_unigram_perplexity_names_ids_outside_the_vocabulary(train, evaluated, fragment):
    with pytest.raises(InputError, match=re.escape(fragment)) as err:
        unigram_perplexity(np.array(train), np.array(evaluated), 4)
    assert "outside the vocabulary [0, 4)" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64])
@pytest.mark.parametrize("chunk", [1, 3, 1 << 22])
def test_unigram_counts_a_chunk_at_a_time_in_the_streams_own_dtype(dtype, chunk):
    """The baseline copied the training stream to int64 (1.2 GB beside a 150 MB corpus's
    int32 tokens); counted in chunks of its own dtype, the counts are bincount's."""
    from llp_jax.data import baseline

    ids_N = np.random.default_rng(0).integers(0, 50, 1000).astype(dtype)
    np.testing.assert_array_equal(
        baseline._counts(ids_N, 60, chunk), np.bincount(ids_N, minlength=60)
    )
    assert baseline._integers(ids_N).dtype == dtype
