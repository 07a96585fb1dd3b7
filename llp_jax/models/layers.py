"""Parameters with logical axis names, LayerNorm, feed-forward and the attention projections.

Initialisation follows PyTorch's defaults (the authors' code): Linear weights and biases
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), embeddings N(0, 1), LayerNorm ones/zeros.
Every parameter carries `out_sharding` = its logical axis names (see training/mesh.py's table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llp_jax.models import dropout as dropout_lib
from llp_jax.models.matmul import dense
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


def split_rng(rng: jax.Array | None, n: int):
    return [None] * n if rng is None else list(jax.random.split(rng, n))


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    return dropout_lib.apply(x, rate, rng)


@jax.custom_jvp
def gelu(x: jax.Array) -> jax.Array:
    """The exact GELU, x * Phi(x): `jax.nn.gelu(approximate=False)`, with a derivative rule.

    Under differentiation the value and derivative come from PyTorch's formula (the authors'),
    Phi(x) = (1 + erf(x / sqrt 2)) / 2, in float32 and rounded once to x's dtype: x Phi(x) and
    Phi(x) + x phi(x). Autodiff would instead differentiate jax.nn.gelu's erfc chain op by op
    (XLA:CPU evaluates erfc as an exp plus two rational polynomials and a select; in bfloat16,
    rounding between ops). The LLP train step 1.02x in float32 (code-faithful) and in bfloat16
    (alternated in one process, Xeon with AMX), and the scaling benchmark's train buffer plan
    815 -> 726 MiB at n = 16k. The forward alone keeps jax.nn.gelu: computed through erf,
    XLA:CPU no longer fused it with the feed-forward's matmuls (the forward's buffer plan
    153 -> 217 MiB at n = 1024). The two values agree to float32 rounding (~1e-7); like
    PyTorch's, the erf form cancels in the far negative tail (x < -5: absolute error ~3e-7)."""
    return jax.nn.gelu(x, approximate=False)


@gelu.defjvp
def _gelu_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    x32 = x.astype(jnp.float32)
    cdf = 0.5 * (1.0 + jax.lax.erf(x32 * np.float32(0.5**0.5)))
    pdf = jnp.exp(-0.5 * x32 * x32) * np.float32((2 * np.pi) ** -0.5)
    return (x32 * cdf).astype(x.dtype), (dx.astype(jnp.float32) * (cdf + x32 * pdf)).astype(
        dx.dtype
    )


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
        h_BxTxF = dense(x_BxTxD, self.w_in[...].astype(dt), bias=self.b_in[...])
        h_BxTxF = dropout(gelu(h_BxTxF), self.rate, rng)
        return dense(h_BxTxF, self.w_out[...].astype(dt), bias=self.b_out[...])


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
    return dense(o_BxQxHxD, w_HxKxD[...].astype(dt), in_dims=2, bias=b_D[...])
