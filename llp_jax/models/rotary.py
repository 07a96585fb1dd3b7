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

from llp_jax.models.matmul import cpu_bf16_matmuls, vary_like

# 2*pi to 60 digits, for the frequencies' fixed-point fractions of a turn.
_TWO_PI = decimal.Decimal(
    "6.28318530717958647692528676655900576839433879875021164194988918461563281257241799725"
)


def inv_freq(head_dim: int, theta: float) -> np.ndarray:
    """theta^(-2i / D), i < D / 2, in float32 (the authors' frequencies)."""
    return _inv_freq(np.arange(0, head_dim, 2, dtype=np.float32), head_dim, theta)


def _inv_freq(even_i: np.ndarray, head_dim: int, theta: float) -> np.ndarray:
    return (1.0 / (theta ** (even_i / head_dim))).astype(np.float32)


def finite_frequencies(head_dim: int, theta: float) -> bool:
    """Whether every frequency of `inv_freq` is finite. theta^(-x) is monotone in x, so the two
    ends decide, and a config check never builds the table of a huge head (d_model=2**30)."""
    ends_2i = np.array([0, max(head_dim - 2, 0)], np.float32)
    with np.errstate(all="ignore"):
        return bool(np.all(np.isfinite(_inv_freq(ends_2i, head_dim, theta))))


@functools.lru_cache(maxsize=64)
def _turn_fractions(head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Each frequency as a 64-bit fixed-point fraction of a turn, split into (high, low) uint32.
    Whole turns are dropped (they do not move an angle): a frequency of a turn or more per
    position (rope_theta=0.1 at head_dim 16) overflowed uint32 here."""
    with decimal.localcontext() as ctx:
        ctx.prec = 80
        fractions = [int(decimal.Decimal(float(f)) / _TWO_PI * (1 << 64)) % (1 << 64)
                     for f in inv_freq(head_dim, theta)]  # fmt: skip
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
    freqs = inv_freq(head_dim, theta).astype(np.float64)
    turns = np.asarray(positions_T, np.float64)[:, None] * (freqs[None, :] / (2 * np.pi))
    turns = turns - np.round(turns)
    # Above 1 rad per position (a base below 1; 1 rad is the top frequency of any base >= 1, so
    # those keep the float64 turns bit for bit) float64 turns lose up to ~1e-6 rad at 2^31, and
    # past a turn per position all of the fraction: position x fixed-point fraction, exact mod
    # 2^64 (uint64 products wrap), as the traced path computes it.
    whole = freqs > 1.0
    if whole.any():
        hi, lo = _turn_fractions(head_dim, theta)
        fraction = (hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64)
        pos = np.asarray(positions_T, np.int64).astype(np.uint64)  # -p: 2^64 - p, the same mod
        exact = (pos[:, None] * fraction[None, :]).view(np.int64) / 2.0**64  # in [-1/2, 1/2)
        turns = np.where(whole[None, :], exact, turns)
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
    if (
        x_BxTxHxD.dtype == jnp.bfloat16
        and jax.default_backend() == "cpu"
        and cpu_bf16_matmuls() == "native"
    ):
        # Inside shard_map the tables vary like x, so that their (unused) cotangents type-check.
        sin_TxF, cos_TxF = vary_like(sin_TxF, x_BxTxHxD), vary_like(cos_TxF, x_BxTxHxD)
        return _rope_by_matmul(x_BxTxHxD, sin_TxF, cos_TxF)
    sin, cos = sin_TxF[:, None, :], cos_TxF[:, None, :]  # [T, 1, F]
    x = x_BxTxHxD.astype(jnp.float32).reshape(*x_BxTxHxD.shape[:-1], D // 2, 2)
    x_even, x_odd = x[..., 0], x[..., 1]
    rotated = jnp.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], axis=-1)
    return rotated.reshape(x_BxTxHxD.shape).astype(x_BxTxHxD.dtype)


@functools.lru_cache(maxsize=8)
def _pair_turn(head_dim: int) -> np.ndarray:
    """[D, D] with (x0, x1, x2, x3, ...) @ R = (-x1, x0, -x3, x2, ...): a quarter turn of each
    interleaved pair. R^T = -R."""
    r_DxD = np.zeros((head_dim, head_dim), np.float32)
    i = np.arange(0, head_dim, 2)
    r_DxD[i + 1, i], r_DxD[i, i + 1] = -1.0, 1.0
    return r_DxD


def _turned(x_BxTxHxD: jax.Array, sign: float = 1.0) -> jax.Array:
    """x @ (sign R) in float32 (exact: one +-x per output), a bfloat16 matmul on CPU."""
    r_DxD = jnp.asarray(sign * _pair_turn(x_BxTxHxD.shape[-1]), jnp.bfloat16)
    return jnp.dot(x_BxTxHxD.astype(jnp.bfloat16), r_DxD, preferred_element_type=jnp.float32)


def _pairs_repeated(t_TxF: jax.Array) -> jax.Array:  # [T, F] -> [T, 1, 2F]: each pair's value
    return jnp.repeat(t_TxF, 2, axis=-1)[:, None, :]


def _pairs_summed(t_BxTxHxD: jax.Array) -> jax.Array:  # the transpose of _pairs_repeated
    B, T, H, D = t_BxTxHxD.shape
    return t_BxTxHxD.reshape(B, T, H, D // 2, 2).sum(axis=(0, 2, 4))


@jax.custom_vjp
def _rope_by_matmul(x_BxTxHxD: jax.Array, sin_TxF: jax.Array, cos_TxF: jax.Array) -> jax.Array:
    """RoPE as x * cos + (x @ R) * sin, cos and sin repeated over each pair: bfloat16 on CPU.

    The elementwise form pairs channels with strided slices and a stack; in the step XLA:CPU
    fuses those with the transposes around the attention into slow strided loops (the
    backward's took ~10 ns per element). Here the pairing is a [D, D] matmul, which YNNPACK
    runs in bfloat16 (AMX) for almost nothing, and the rest is contiguous elementwise work.
    The backward (dx = g * cos + (g * sin) @ R^T, R^T = -R) rounds g * sin to bfloat16 for its
    matmul, as `matmul.dense` rounds its incoming gradient, and sums in float32. The bfloat16
    LLP train step 1.04x (1.374 -> 1.304 s, 12 rounds alternated in one process, Xeon with
    AMX, load 1.5-1.7); in float32 the matmul costs more than it saves (0.975x), so float32
    keeps the slices."""
    x = x_BxTxHxD.astype(jnp.float32)
    rotated = x * _pairs_repeated(cos_TxF) + _turned(x_BxTxHxD) * _pairs_repeated(sin_TxF)
    return rotated.astype(x_BxTxHxD.dtype)


def _rope_by_matmul_fwd(x_BxTxHxD, sin_TxF, cos_TxF):
    return _rope_by_matmul(x_BxTxHxD, sin_TxF, cos_TxF), (x_BxTxHxD, sin_TxF, cos_TxF)


def _rope_by_matmul_bwd(residuals, g_BxTxHxD):
    x_BxTxHxD, sin_TxF, cos_TxF = residuals
    g = g_BxTxHxD.astype(jnp.float32)
    g_sin = g * _pairs_repeated(sin_TxF)
    dx = g * _pairs_repeated(cos_TxF) + _turned(g_sin, -1.0)
    # The tables' cotangents (positions are integers, so nothing upstream uses them; XLA
    # drops them unless asked).
    dsin = _pairs_summed(g * _turned(x_BxTxHxD)).astype(sin_TxF.dtype)
    dcos = _pairs_summed(g * x_BxTxHxD.astype(jnp.float32)).astype(cos_TxF.dtype)
    return dx.astype(x_BxTxHxD.dtype), dsin, dcos


_rope_by_matmul.defvjp(_rope_by_matmul_fwd, _rope_by_matmul_bwd)
