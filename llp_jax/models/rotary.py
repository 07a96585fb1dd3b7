"""Rotary position embeddings (RoPE) over absolute positions, interleaved channel pairs, with
angles exact at any position.

The authors' code rotates all d_h channels with theta = 10000 and pairs channels (0,1), (2,3), ...
(the "interleaved" layout of lucidrains' rotary-embedding-torch), so that is what we do.

Their angle is the float32 product position * frequency, whose error grows with the position:
~1e-4 rad at n = 2048 (harmless), but ~0.1 rad at 10^6 and ~1 rad at 5 * 10^6, where LLP's
streaming protocol and the cached decoders run on long test streams. Here the angle is reduced
modulo one turn exactly: static (NumPy) positions in float64, traced positions in 64-bit fixed
point with 32-bit integer arithmetic (the frequency as a 64-bit fraction of a turn). Either way
the angle is within ~2e-7 rad of the true one at every int32 position, and RoPE's relative
property (q at p + c against k at p' + c scores as at p, p') holds to float32 rounding whatever
the offset c.
"""

from __future__ import annotations

import decimal
import functools

import jax
import jax.numpy as jnp
import numpy as np

# 2*pi to 60 digits, for the frequencies' fixed-point fractions of a turn.
_TWO_PI = decimal.Decimal(
    "6.28318530717958647692528676655900576839433879875021164194988918461563281257241799725"
)


def inv_freq(head_dim: int, theta: float) -> np.ndarray:
    """theta^(-2i / D), i < D / 2, in float32 (the authors' frequencies)."""
    return (1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))).astype(
        np.float32
    )


@functools.lru_cache(maxsize=64)
def _turn_fractions(head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Each frequency as a 64-bit fixed-point fraction of a turn, split into (high, low) uint32."""
    with decimal.localcontext() as ctx:
        ctx.prec = 80
        fractions = [
            int(decimal.Decimal(float(f)) / _TWO_PI * (1 << 64)) for f in inv_freq(head_dim, theta)
        ]
    hi = np.array([g >> 32 for g in fractions], np.uint32)
    lo = np.array([g & 0xFFFFFFFF for g in fractions], np.uint32)
    return hi, lo


def _mul_hi(a: jax.Array, b: jax.Array) -> jax.Array:
    """The high 32 bits of the 64-bit product of two uint32 arrays (Hacker's Delight 8-2)."""
    mask = jnp.uint32(0xFFFF)
    a0, a1, b0, b1 = a & mask, a >> 16, b & mask, b >> 16
    t = a0 * b0
    t = a1 * b0 + (t >> 16)
    w1, w2 = t & mask, t >> 16
    t = a0 * b1 + w1
    return a1 * b1 + w2 + (t >> 16)


def _static_angles(positions_T: np.ndarray, head_dim: int, theta: float) -> np.ndarray:
    turns = np.asarray(positions_T, np.float64)[:, None] * (
        inv_freq(head_dim, theta).astype(np.float64)[None, :] / (2 * np.pi)
    )
    turns = turns - np.round(turns)
    return (turns * 2 * np.pi).astype(np.float32)


def rope_angles(positions_T, head_dim: int, theta: float = 10000.0) -> jax.Array:
    """Angles [T, D/2] in [-pi, pi) of each position and frequency, exact to ~2e-7 rad."""
    if isinstance(positions_T, np.ndarray):  # static: exact in float64, folded into the graph
        return jnp.asarray(_static_angles(positions_T, head_dim, theta))
    hi, lo = _turn_fractions(head_dim, theta)
    pos = jnp.asarray(positions_T, jnp.int32)
    mag = jnp.abs(pos).astype(jnp.uint32)[:, None]  # |p| < 2^31; phase(-p) = -phase(p)
    frac = mag * jnp.asarray(hi)[None, :] + _mul_hi(mag, jnp.asarray(lo)[None, :])  # mod 2^32
    signed = jax.lax.bitcast_convert_type(frac, jnp.int32).astype(jnp.float32)  # [-2^31, 2^31)
    angles = signed * np.float32(2 * np.pi / 2**32)
    return jnp.where(pos[:, None] < 0, -angles, angles)


def apply_rope(x_BxTxHxD: jax.Array, positions_T, theta: float = 10000.0) -> jax.Array:
    """Rotates interleaved channel pairs of x by angle position * theta^(-2i/D)."""
    D = x_BxTxHxD.shape[-1]
    if isinstance(positions_T, np.ndarray):
        # Static positions: the sin and cos tables as constants. Computed in the graph, XLA
        # fuses sin and cos into each use and evaluates them once per element of x (B*H times
        # too many) in every fusion that reads them, the backward's recomputations included.
        angles = _static_angles(positions_T, D, theta)
        sin_TxF, cos_TxF = jnp.asarray(np.sin(angles)), jnp.asarray(np.cos(angles))
    else:
        angles_TxF = rope_angles(positions_T, D, theta)
        sin_TxF, cos_TxF = jnp.sin(angles_TxF), jnp.cos(angles_TxF)
    sin, cos = sin_TxF[:, None, :], cos_TxF[:, None, :]  # [T, 1, F]
    x = x_BxTxHxD.astype(jnp.float32).reshape(*x_BxTxHxD.shape[:-1], D // 2, 2)
    x_even, x_odd = x[..., 0], x[..., 1]
    rotated = jnp.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], axis=-1)
    return rotated.reshape(x_BxTxHxD.shape).astype(x_BxTxHxD.dtype)
