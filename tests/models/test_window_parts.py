"""The blocked path's window-free form (`window_parts.window_parts`) equals `_dense` on the built
windows — values and gradients, with dropout (the same keep-mask), several blocks back, padded
blocks (an offset, a shifted block grid) and per-example document masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llp_jax.models import attention as A
from llp_jax.models import window_parts as P
from llp_jax.models.masks import ExampleMask, MaskSpec, Windows


def _windowed(w, q, k, v, allowed, rate, rng):
    return w.merge(A._dense(w.split(q), w.window(k), w.window(v), allowed, rate, rng))


def _parts(w, q, k, v, allowed, rate, rng):
    return w.merge(P.window_parts(w, w.split(q), w.split(k), w.split(v), allowed, rate, rng))


CASES = [  # (mask, offset, T, documents)
    (MaskSpec(causal=True, block=8, blocks_back=1), 0, 32, False),
    (MaskSpec(causal=True, block=8, blocks_back=2), 0, 40, False),
    (MaskSpec(causal=True, block=8, blocks_back=1), 13, 30, False),  # ragged first and last
    (MaskSpec(causal=True, block=8, blocks_back=0, block_shift=4), 0, 32, False),  # shifted
    (MaskSpec(causal=False, block=8, blocks_back=1), 0, 24, False),
    (MaskSpec(causal=True, block=8, blocks_back=1), 0, 32, True),
]


@pytest.mark.parametrize("mask,offset,T,documents", CASES)
@pytest.mark.parametrize("rate", [0.0, 0.3])
@pytest.mark.parametrize("batch", [1, 2])  # batch 1 runs with the blocks as the only batch axis
def test_window_parts_equal_the_built_windows(mask, offset, T, documents, rate, batch):
    rng = np.random.default_rng(T + offset)
    q, k, v = (jnp.asarray(rng.normal(size=(batch, T, 2, 4)), jnp.float32) for _ in range(3))
    w = Windows.make(mask, offset, T)
    W = w.k_pos_NbxW.shape[1]
    allowed = jnp.asarray(w.k_pos_NbxW >= 0)[:, None, :]
    if mask.causal:
        allowed = (
            allowed
            & jnp.asarray(np.arange(W)[None, :] <= np.arange(w.s)[:, None] + w.back * w.s)[None]
        )
    if documents:
        ids = jnp.asarray(np.cumsum(rng.random((batch, T)) < 0.1, axis=1))
        allowed = allowed & ExampleMask(None, ids, ids).windows(w)
    key = jax.random.key(5) if rate else None

    def loss(f):
        return lambda q, k, v: (f(w, q, k, v, allowed, rate, key) ** 2).sum()

    want = _windowed(w, q, k, v, allowed, rate, key)
    got = _parts(w, q, k, v, allowed, rate, key)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.grad(loss(_parts), (0, 1, 2))(q, k, v),
                    jax.grad(loss(_windowed), (0, 1, 2))(q, k, v)):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mask,offset,T,documents", CASES[:3])
def test_window_parts_in_bfloat16_match_float32(mask, offset, T, documents):
    """bfloat16 q, k, v (on CPU the matmuls take matmul.batched*'s hand-written backward):
    values and gradients within bfloat16 rounding of the float32 windows."""
    rng = np.random.default_rng(T + offset)
    q, k, v = (jnp.asarray(rng.normal(size=(2, T, 2, 16)), jnp.float32) for _ in range(3))
    w = Windows.make(mask, offset, T)
    W = w.k_pos_NbxW.shape[1]
    allowed = (
        jnp.asarray(w.k_pos_NbxW >= 0)[:, None, :]
        & jnp.asarray(np.arange(W)[None, :] <= np.arange(w.s)[:, None] + w.back * w.s)[None]
    )

    def loss(f, dtype):
        def fn(q, k, v):
            args = (x.astype(dtype) for x in (q, k, v))
            return (f(w, *args, allowed, 0.0, None).astype(jnp.float32) ** 2).sum()

        return fn

    bf16 = jax.jit(jax.value_and_grad(loss(_parts, jnp.bfloat16), (0, 1, 2)))(q, k, v)
    f32 = jax.value_and_grad(loss(_windowed, jnp.float32), (0, 1, 2))(q, k, v)
    np.testing.assert_allclose(bf16[0], f32[0], rtol=2e-2)
    for a, b in zip(bf16[1], f32[1]):
        assert a.dtype == jnp.float32
        scale = float(np.abs(b).max())
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=3e-2 * scale)
