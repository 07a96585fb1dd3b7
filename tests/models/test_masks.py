"""MaskSpec.allowed, hand-checked: each model's mask drawn as rows of 'x' (visible) and '.'
(hidden) for a few positions — PerceiverAR's offset queries, LLP's segments, S^2-Attn's shifted
groups, the enhanced models' history prefix, padding keys — static NumPy and traced jax alike."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from llp_jax import models

MS = models.MaskSpec


def _m(rows):
    return np.array([[c == "x" for c in r] for r in rows])


def test_allowed_perceiver_ar_query_offset():
    """Queries at m..n-1 over keys 0..n-1: key <= query, the triangle aligned bottom-right."""
    n, l = 6, 2
    got = MS(causal=True).allowed(np.arange(n - l, n), np.arange(n))
    np.testing.assert_array_equal(got, _m(["xxxxx.", "xxxxxx"]))
    # the wrong, top-left-aligned triangle (is_causal=True with fewer queries than keys)
    assert not np.array_equal(got, np.tril(np.ones((l, n), bool)))


def test_allowed_llp_segments():
    got = MS(causal=True, block=2, blocks_back=1).allowed(np.arange(6), np.arange(6))
    np.testing.assert_array_equal(
        got, _m(["x.....", "xx....", "xxx...", "xxxx..", "..xxx.", "..xxxx"])
    )
    got = MS(causal=True, block=2, blocks_back=2).allowed(np.arange(8), np.arange(8))
    np.testing.assert_array_equal(got[6:], _m(["..xxxxx.", "..xxxxxx"]))


def test_allowed_s2_shifted_groups():
    """Groups of 4 shifted left by 2: {0,1}, {2..5}, {6,7}; causal inside; no wrap-around."""
    got = MS(causal=True, block=4, block_shift=2).allowed(np.arange(8), np.arange(8))
    np.testing.assert_array_equal(
        got,
        _m(
            [
                "x.......",
                "xx......",
                "..x.....",
                "..xx....",
                "..xxx...",
                "..xxxx..",
                "......x.",
                "......xx",
            ]
        ),
    )


def test_allowed_history_prefix():
    n, m = 5, 3
    bidir = MS(causal=True, prefix=m, prefix_causal=False).allowed(np.arange(n), np.arange(n))
    np.testing.assert_array_equal(bidir, _m(["xxx..", "xxx..", "xxx..", "xxxx.", "xxxxx"]))
    causal = MS(causal=True, prefix=m, prefix_causal=True).allowed(np.arange(n), np.arange(n))
    np.testing.assert_array_equal(causal, _m(["x....", "xx...", "xxx..", "xxxx.", "xxxxx"]))
    split = MS(causal=True, prefix=4, prefix_block=2, prefix_causal=False).allowed(
        np.arange(6), np.arange(6)
    )
    np.testing.assert_array_equal(
        split, _m(["xx....", "xx....", "..xx..", "..xx..", "xxxxx.", "xxxxxx"])
    )


def test_allowed_padding_keys_and_jax_inputs():
    mask = MS(causal=True, block=2, blocks_back=1)
    q_pos, k_pos = np.array([0, 1]), np.array([-2, -1, 0, 1])
    np.testing.assert_array_equal(mask.allowed(q_pos, k_pos), _m(["..x.", "..xx"]))
    assert isinstance(mask.allowed(q_pos, k_pos), np.ndarray)  # static under jit
    got = mask.allowed(jnp.asarray(q_pos), jnp.asarray(k_pos))
    assert isinstance(got, jax.Array)
    np.testing.assert_array_equal(np.asarray(got), _m(["..x.", "..xx"]))
