"""Dropout keep-masks from 16-bit halves of each hashed random word: the right rate, independent
neighbours, halves and keys, exact expectation, any shape, the same mask under any sharding."""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

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

    # Neighbouring decisions (consecutive indices of the hash), neighbouring rows, another key
    # and a key folded from this one (how layers and steps get theirs) are independent: each
    # pair is dropped together with probability rate**2.
    def joint(a, b):
        both = (~a & ~b).mean()
        assert abs(both - rate**2) < 5 * (rate**2 * (1 - rate**2) / a.size) ** 0.5

    joint(keep[..., :-1], keep[..., 1:])
    joint(keep[:-1], keep[1:])
    for key in (jax.random.key(2), jax.random.fold_in(jax.random.key(1), 1)):
        joint(keep, np.asarray(dropout.keep_mask(key, rate, shape)))


def test_the_mask_is_the_same_under_any_sharding():
    # A pure function of each element's global index: sharded, every device computes its own
    # part of the same mask (the trainer's data-parallel steps drop what one device would).
    shape = (16, 4, 64, 96)
    draw = lambda k: dropout.keep_mask(k, 0.3, shape)  # noqa: E731
    whole = np.asarray(jax.jit(draw)(jax.random.key(5)))
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
    for spec in (P("data"), P("data", None, None, "model"), P(None, "model")):
        sharded = jax.jit(draw, out_shardings=NamedSharding(mesh, spec))(jax.random.key(5))
        np.testing.assert_array_equal(np.asarray(sharded), whole)


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


def test_a_mask_past_2_to_the_32_words_is_drawn():
    """A pod's global batch makes masks past 2**32 words (the paper's LLP, 1024 windows: the
    attention probabilities' [1024 * 8, 12, 256, 512]); the jitted step raised a ValueError
    traceback. The trace of such a mask now runs (nothing is computed)."""
    shape = (1024 * 8, 12, 256, 512)
    out = jax.eval_shape(lambda k: dropout.keep_mask(k, 0.05, shape), jax.random.key(0))
    assert out.shape == shape and out.dtype == jnp.bool_


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_past_max_words_rows_are_independent_and_smaller_masks_unchanged(monkeypatch, rate):
    """The split form, exercised on small masks with MAX_WORDS lowered: the rate holds, rows
    (hashed into the second seed word) and neighbours are independent, each row differs, and
    the mask is still the same under any sharding."""
    shape = (64, 4, 128, 512)
    key = jax.random.key(1)
    whole = np.asarray(dropout.keep_mask(key, rate, shape))
    monkeypatch.setattr(dropout, "MAX_WORDS", 128 * 256)  # split after the second axis
    split = np.asarray(jax.jit(lambda k: dropout.keep_mask(k, rate, shape))(key))
    assert not np.array_equal(split, whole)
    dropped = 1.0 - split.mean()
    assert abs(dropped - dropout.quantised(rate)) < 5 * (rate * (1 - rate) / split.size) ** 0.5
    for a, b in [(split[:-1], split[1:]), (split[:, :-1], split[:, 1:]),
                 (split[..., :-1], split[..., 1:]), (split[..., :256], split[..., 256:])]:  # fmt: skip
        both = (~a & ~b).mean()
        assert abs(both - rate**2) < 5 * (rate**2 * (1 - rate**2) / a.size) ** 0.5
    rows = split.reshape(64 * 4, -1)
    assert len({row.tobytes() for row in rows}) == len(rows)
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
    for spec in (P("data"), P(None, "model", None, None), P(None, None, "data")):
        sharded = jax.jit(lambda k: dropout.keep_mask(k, rate, shape),
                          out_shardings=NamedSharding(mesh, spec))(key)  # fmt: skip
        np.testing.assert_array_equal(np.asarray(sharded), split)
    monkeypatch.undo()
    np.testing.assert_array_equal(np.asarray(dropout.keep_mask(key, rate, shape)), whole)


def test_masks_within_max_words_are_the_ones_of_before_the_split_form():
    """Every run's masks stay bitwise what they were (a resumed run drops what it dropped):
    the words of the form before MAX_WORDS existed, pinned."""
    words = np.asarray(dropout.random_words(jax.random.key(7), (64, 4, 128, 256)))
    assert words.ravel()[:3].tolist() == [2861991457, 899606962, 4056235178]
    assert hashlib.sha256(words.tobytes()).hexdigest()[:16] == "10ca083726293c51"
