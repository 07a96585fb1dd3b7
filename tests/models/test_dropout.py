"""Dropout keep-masks from 16-bit halves of each random word: the right rate, independent
halves, exact expectation, any shape."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llp_jax.models import dropout


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_the_drop_rate_and_independence_of_the_two_halves(rate):
    shape = (64, 4, 128, 512)  # 16.8M decisions
    keep = np.asarray(jax.jit(lambda k: dropout.keep_mask(k, rate, shape))(jax.random.key(1)))
    n = keep.size
    dropped = 1.0 - keep.mean()
    sigma = (rate * (1 - rate) / n) ** 0.5
    assert abs(dropped - dropout.quantised(rate)) < 5 * sigma
    # Element j and j + 256 of a row come from the same 32-bit word: they must not correlate.
    lo, hi = ~keep[..., :256], ~keep[..., 256:]
    both = (lo & hi).mean()
    assert abs(both - rate**2) < 5 * (rate**2 * (1 - rate**2) / lo.size) ** 0.5
    # Neighbouring rows and other keys give other masks.
    assert (keep[0] != keep[1]).mean() > rate
    other = np.asarray(dropout.keep_mask(jax.random.key(2), rate, shape))
    assert (keep != other).mean() > rate


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 1), (4, 3, 9)])
def test_any_shape_odd_last_axes_included(shape):
    keep = dropout.keep_mask(jax.random.key(0), 0.5, shape)
    assert keep.shape == shape and keep.dtype == jnp.bool_


def test_inverted_dropout_keeps_the_expectation_exact():
    x = jnp.ones((256, 4096), jnp.float32)
    out = np.asarray(dropout.apply(x, 0.05, jax.random.key(3)))
    kept = out[out != 0]
    np.testing.assert_allclose(kept, 1.0 / (1.0 - 3277 / 65536), rtol=1e-7)
    assert abs(out.mean() - 1.0) < 5 * (0.05 / 0.95 / out.size) ** 0.5
    assert dropout.apply(x, 0.05, None) is x and dropout.apply(x, 0.0, jax.random.key(0)) is x
