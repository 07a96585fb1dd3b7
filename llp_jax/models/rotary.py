"""Rotary position embeddings (RoPE) over absolute positions, interleaved channel pairs.

The authors' code rotates all d_h channels with theta = 10000 and pairs channels (0,1), (2,3), ...
(the "interleaved" layout of lucidrains' rotary-embedding-torch), so that is what we do.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def apply_rope(x_BxTxHxD: jax.Array, positions_T, theta: float = 10000.0) -> jax.Array:
    """Rotates interleaved channel pairs of x by angle position * theta^(-2i/D)."""
    D = x_BxTxHxD.shape[-1]
    inv_freq_F = 1.0 / (theta ** (np.arange(0, D, 2, dtype=np.float32) / D))
    angles_TxF = jnp.asarray(positions_T, jnp.float32)[:, None] * inv_freq_F[None, :]
    sin, cos = jnp.sin(angles_TxF)[:, None, :], jnp.cos(angles_TxF)[:, None, :]  # [T,1,F]
    x = x_BxTxHxD.astype(jnp.float32).reshape(*x_BxTxHxD.shape[:-1], D // 2, 2)
    x_even, x_odd = x[..., 0], x[..., 1]
    rotated = jnp.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], axis=-1)
    return rotated.reshape(x_BxTxHxD.shape).astype(x_BxTxHxD.dtype)
