"""Parameters with logical axis names, LayerNorm, feed-forward and the attention projections.

Initialisation follows PyTorch's defaults (the authors' code): Linear weights and biases
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), embeddings N(0, 1), LayerNorm ones/zeros.
Every parameter carries `out_sharding` = its logical axis names (see training/mesh.py's table).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from llp_jax.models import dropout as dropout_lib
from llp_jax.models.rotary import apply_rope

if TYPE_CHECKING:
    from llp_jax.models.config import ModelConfig

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def logical_param(value: jax.Array, axes) -> nnx.Param:
    """A parameter annotated with logical axis names. Eager sharding is off: the names are not
    mesh axes; the trainer maps them through its one logical-axis table (training/mesh.py)."""
    return nnx.Param(value, out_sharding=tuple(axes), eager_sharding=False)


def uniform_param(rngs: nnx.Rngs, shape: Sequence[int], fan_in: int, axes) -> nnx.Param:
    bound = fan_in**-0.5
    value = jax.random.uniform(rngs.params(), tuple(shape), jnp.float32, -bound, bound)
    return logical_param(value, axes)


def dense(x: jax.Array, w: jax.Array, in_dims: int = 1) -> jax.Array:
    """`x @ w` contracting x's last `in_dims` axes with w's first ones, as one 2-D matmul
    [rows, K] @ [K, N]. The gradient w.r.t. w then contracts a single rows axis: with the rows
    left as several axes (batch, positions) XLA:CPU transposes the activations for the weight
    gradient, and the feed-forward's forward + backward measured 1.34x slower that way
    ([8, 1024, 256] -> 1024 -> 256, alternated in one process).

    On CPU, a weight with K > N enters as its transpose [N, K] behind an optimisation barrier,
    so that autodiff forms the weight gradient as dy^T @ x ([N, K]; XLA may not fold the
    transpose back). XLA:CPU runs x^T @ dy at 109 GFLOP/s for the feed-forward's second weight
    ([8192, 1024]^T @ [8192, 256]) but dy^T @ x at 150 (2-core AMD EPYC, float32): the
    feed-forward's forward + backward 213 -> 198 ms, the code-faithful LLP step 1.021-1.035x
    (four runs, alternated in one process). Accelerators keep the plain form.

    bfloat16 inputs multiply in the plain form with float32 accumulation, then round to
    bfloat16 (the usual mixed precision). That form is also the one XLA:CPU hands to YNNPACK as
    a bfloat16 matmul (AMX on recent Intel CPUs): bf16 x bf16 -> bf16 is not on its list and
    was upcast to float32, and a transposed operand is refused too (so the barrier form above
    would undo it). Measured on a 2-core Intel Xeon with AMX: [8192, 256] @ [256, 1024] at
    ~1,700 GFLOP/s vs ~350 in float32, and the LLP train step with compute_dtype bfloat16
    1.063x (1.838 -> 1.729 s, 10 rounds alternated in one process, load 1.61)."""
    lead = x.shape[: x.ndim - in_dims]
    k = math.prod(w.shape[:in_dims])
    x_MxK, w_KxN = x.reshape(-1, k), w.reshape(k, -1)
    if x_MxK.dtype == jnp.bfloat16:
        y_MxN = jnp.dot(x_MxK, w_KxN, preferred_element_type=jnp.float32).astype(x.dtype)
    elif w_KxN.shape[0] > w_KxN.shape[1] and jax.default_backend() == "cpu":
        w_NxK = jax.lax.optimization_barrier(w_KxN.T)
        y_MxN = jnp.einsum("mk,nk->mn", x_MxK, w_NxK)
    else:
        y_MxN = x_MxK @ w_KxN
    return y_MxN.reshape(*lead, *w.shape[in_dims:])


def split_rng(rng: jax.Array | None, n: int):
    return [None] * n if rng is None else list(jax.random.split(rng, n))


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    return dropout_lib.apply(x, rate, rng)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis, computed in float32 (PyTorch eps 1e-5)."""

    def __init__(self, dim: int, axis_name: str = "norm"):
        self.scale = logical_param(jnp.ones((dim,), jnp.float32), (axis_name,))
        self.bias = logical_param(jnp.zeros((dim,), jnp.float32), (axis_name,))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + 1e-5) * self.scale[...] + self.bias[...]
        return y.astype(x.dtype)


class FeedForward(nnx.Module):
    """Linear(d, r*d) -> GELU -> dropout -> Linear(r*d, d)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, f = cfg.d_model, cfg.mlp_ratio * cfg.d_model
        self.rate = cfg.dropout
        self.w_in = uniform_param(rngs, (d, f), d, ("embed", "mlp"))
        self.b_in = uniform_param(rngs, (f,), d, ("mlp",))
        self.w_out = uniform_param(rngs, (f, d), f, ("mlp", "embed"))
        self.b_out = uniform_param(rngs, (d,), f, ("embed",))

    def __call__(self, x_BxTxD: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        dt = x_BxTxD.dtype
        h_BxTxF = dense(x_BxTxD, self.w_in[...].astype(dt)) + self.b_in[...].astype(dt)
        h_BxTxF = dropout(jax.nn.gelu(h_BxTxF, approximate=False), self.rate, rng)
        return dense(h_BxTxF, self.w_out[...].astype(dt)) + self.b_out[...].astype(dt)


class AttentionProjections(nnx.Module):
    """Q, K, V (or shared K=V) projections, optional K/V head LayerNorm, output projection."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, H, Dh = cfg.d_model, cfg.num_heads, cfg.head_dim
        self.cfg = cfg
        self.wq = uniform_param(rngs, (d, H, Dh), d, ("embed", "heads", "kv"))
        if cfg.shared_kv:
            self.wkv = uniform_param(rngs, (d, H, Dh), d, ("embed", "heads", "kv"))
        else:
            self.wk = uniform_param(rngs, (d, H, Dh), d, ("embed", "heads", "kv"))
            self.wv = uniform_param(rngs, (d, H, Dh), d, ("embed", "heads", "kv"))
        self.kv_norm = LayerNorm(Dh) if cfg.kv_head_norm != "off" else None
        self.wo = uniform_param(rngs, (H, Dh, d), d, ("heads", "kv", "embed"))
        self.bo = uniform_param(rngs, (d,), d, ("embed",))

    def qkv(self, hq_BxQxD, hk_BxKxD, q_pos, k_pos, use_rope: bool):
        """Queries, keys and values [B, T, H, Dh]: projected, rotated (in RoPE layers), then the
        K/V head LayerNorm (if on) — the authors' order: the LayerNorm does not commute with the
        rotation, so normalising first would be a different function."""
        dt = hq_BxQxD.dtype
        proj = lambda h, w: dense(h, w[...].astype(dt))  # noqa: E731  [B, T, d] -> [B, T, H, Dh]
        q = proj(hq_BxQxD, self.wq)
        if self.cfg.shared_kv:
            k = v = proj(hk_BxKxD, self.wkv)
        else:
            k, v = proj(hk_BxKxD, self.wk), proj(hk_BxKxD, self.wv)
        if use_rope:
            theta = self.cfg.rope_theta
            q = apply_rope(q, q_pos, theta)
            # K = V in the code, so rotating the keys rotates the values too.
            k = apply_rope(k, k_pos, theta)
            v = k if self.cfg.shared_kv else v
        if self.cfg.kv_head_norm == "on":
            k = self.kv_norm(k)
            v = k if self.cfg.shared_kv else self.kv_norm(v)
        return q, k, v

    def out(self, o_BxQxHxD: jax.Array) -> jax.Array:
        """The output projection (heads merged)."""
        return project_heads(o_BxQxHxD, self.wo, self.bo)


def project_heads(o_BxQxHxD: jax.Array, w_HxKxD: nnx.Param, b_D: nnx.Param) -> jax.Array:
    """[B, Q, H, Dh] -> [B, Q, d]: merge heads through an output projection with bias."""
    dt = o_BxQxHxD.dtype
    return dense(o_BxQxHxD, w_HxKxD[...].astype(dt), in_dims=2) + b_D[...].astype(dt)
