"""`layers.gelu` is the exact GELU: `jax.nn.gelu(approximate=False)` when not differentiated,
PyTorch's erf formula with its derivative written out when differentiated; both equal to the
double-precision reference, values and derivatives (first and second), in float32 and bfloat16."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llp_jax.models import layers

X = np.concatenate([np.linspace(-12, 12, 4001), [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0]])


def _exact(x: float) -> float:  # x * Phi(x) in double precision
    return x * 0.5 * math.erfc(-x / math.sqrt(2))


def test_float32_values_and_gradient_equal_the_reference():
    x = jnp.asarray(X, jnp.float32)
    got = np.asarray(layers.gelu(x))
    np.testing.assert_allclose(
        got, np.array([_exact(v) for v in X], np.float32), rtol=2e-6, atol=2e-6
    )
    np.testing.assert_allclose(
        got, np.asarray(jax.nn.gelu(x, approximate=False)), rtol=2e-6, atol=2e-6
    )
    value, _ = jax.jvp(layers.gelu, (x,), (jnp.ones_like(x),))  # the differentiated form's value
    np.testing.assert_allclose(np.asarray(value), got, rtol=2e-6, atol=2e-6)
    grad = jax.vmap(jax.grad(layers.gelu))(x)
    want = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(want), rtol=1e-5, atol=1e-6)
    second = jax.vmap(jax.grad(jax.grad(layers.gelu)))(x)
    want2 = jax.vmap(jax.grad(jax.grad(lambda v: jax.nn.gelu(v, approximate=False))))(x)
    np.testing.assert_allclose(np.asarray(second), np.asarray(want2), rtol=1e-4, atol=1e-5)


def test_jvp_matches_finite_differences():
    x = jnp.asarray(np.linspace(-6, 6, 97), jnp.float64 if jax.config.x64_enabled else jnp.float32)
    _, tangent = jax.jvp(layers.gelu, (x,), (jnp.ones_like(x),))
    h, xs = 1e-4, [float(v) for v in np.asarray(x)]
    fd = (np.array([_exact(v + h) for v in xs]) - np.array([_exact(v - h) for v in xs])) / (2 * h)
    np.testing.assert_allclose(np.asarray(tangent), fd, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_bfloat16_rounds_the_float32_value_once(jit):
    """bfloat16 in, bfloat16 out. Differentiated: the float32 GELU of the same input, rounded
    once (to bfloat16's rounding, or 1e-6 where the erf form cancels in the far negative tail);
    its gradient is bfloat16 and within bfloat16 rounding of float32's. Not differentiated:
    jax.nn.gelu's bfloat16 value."""
    xb = jnp.asarray(X, jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(layers.gelu(xb), np.float32),
                                  np.asarray(jax.nn.gelu(xb, approximate=False), np.float32))  # fmt: skip
    f = lambda v: jax.jvp(layers.gelu, (v,), (jnp.ones_like(v),))[0]  # noqa: E731
    got = (jax.jit(f) if jit else f)(xb)
    assert got.dtype == jnp.bfloat16
    want = np.array([_exact(float(v)) for v in np.asarray(xb, np.float32)])
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=2**-8, atol=1e-6)
    g = jax.grad(lambda v: jnp.sum(layers.gelu(v).astype(jnp.float32)))(xb)
    assert g.dtype == jnp.bfloat16
    g32 = jax.grad(lambda v: jnp.sum(layers.gelu(v)))(xb.astype(jnp.float32))
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(g32), rtol=1e-2, atol=1e-2)
