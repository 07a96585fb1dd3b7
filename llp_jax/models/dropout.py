"""Dropout keep-masks at half the random-bit cost: two 16-bit draws from every 32-bit word.

On CPU the counter-based PRNG (threefry) dominates dropout: one 32-bit word per element costs
about as much as ten elementwise passes over the tensor (195 ms for the [32, 4, 256, 512]
attention probabilities of the benchmark's LLP step, vs 22 ms for an exp). A keep decision
needs far fewer than 32 bits, so each word yields two: its low and high 16 bits, compared with
the rate quantised to 1/65536 (0.05 -> 3277/65536 = 0.0500031). The kept values are scaled by
1 / (1 - quantised rate), so the expectation is exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LEVELS = 1 << 16


def quantised(rate: float) -> float:
    """The drop probability the masks really use: `rate` rounded to a multiple of 1/65536."""
    return round(rate * LEVELS) / LEVELS


def keep_mask(rng: jax.Array, rate: float, shape) -> jax.Array:
    """Boolean mask of `shape`: True with probability 1 - quantised(rate), independently."""
    shape = tuple(shape)
    last = shape[-1] if shape else 1
    half = (last + 1) // 2
    bits = jax.random.bits(rng, (*shape[:-1], half), jnp.uint32)
    u16 = jnp.concatenate([bits & 0xFFFF, bits >> 16], axis=-1)[..., :last]
    return (u16 >= jnp.uint32(round(rate * LEVELS))).reshape(shape)


def apply(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Inverted dropout of `x` (identity without an rng or at rate 0)."""
    if rng is None or rate == 0.0:
        return x
    return apply_mask(x, keep_mask(rng, rate, x.shape), rate)


def apply_mask(x: jax.Array, keep: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout of `x` with a given keep-mask (drawn by `keep_mask` at `rate`)."""
    return jnp.where(keep, x / (1.0 - quantised(rate)), 0.0).astype(x.dtype)
