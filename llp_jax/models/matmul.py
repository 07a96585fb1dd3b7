"""`dense`: every weight matmul of the models (projections, feed-forward, output head), in the
form each backend runs fastest, with its bias added where the sum is still float32.

Why a module of its own: XLA:CPU's fast paths are picky about the *form* of a dot, and autodiff
does not produce those forms by itself. Each rule below was measured (numbers in docstrings);
tests/models/test_dense.py holds every form equal to a plain `x @ w + b`, values and gradients.
"""

from __future__ import annotations

import functools
import math
import os
import re
from typing import Sequence

import jax
import jax.numpy as jnp

from llp_jax.kernels import blas


def dense(x: jax.Array, w: jax.Array, in_dims: int = 1, bias: jax.Array | None = None) -> jax.Array:
    """`x @ w (+ bias)` contracting x's last `in_dims` axes with w's first ones, as one 2-D
    matmul [rows, K] @ [K, N]. The gradient w.r.t. w then contracts a single rows axis: with the
    rows left as several axes (batch, positions) XLA:CPU transposes the activations for the
    weight gradient, and the feed-forward's forward + backward measured 1.34x slower that way
    ([8, 1024, 256] -> 1024 -> 256, alternated in one process).

    On CPU, a float32 weight with K > N enters as its transpose [N, K] behind an optimisation
    barrier, so that autodiff forms the weight gradient as dy^T @ x ([N, K]; XLA may not fold
    the transpose back). XLA:CPU runs x^T @ dy at 109 GFLOP/s for the feed-forward's second
    weight ([8192, 1024]^T @ [8192, 256]) but dy^T @ x at 150 (2-core AMD EPYC, float32): the
    feed-forward's forward + backward 213 -> 198 ms, the code-faithful LLP step 1.021-1.035x
    (four runs, alternated in one process). Accelerators keep the plain form.

    bfloat16 inputs multiply with float32 accumulation, add the bias (kept float32) to the
    float32 sum, then round to bfloat16: the usual mixed precision. That dot is also the one
    XLA:CPU hands to YNNPACK as a bfloat16 matmul (AMX on recent Intel CPUs): bf16 x bf16 ->
    bf16 is not on its list and was upcast to float32. Measured on a 2-core Intel Xeon with AMX:
    [8192, 256] @ [256, 1024] at ~1,700 GFLOP/s vs ~350 in float32, the LLP train step 1.063x.
    The bias's gradient is then a float32 sum; a bfloat16 bias gradient compiles on CPU to a
    single-threaded reduce-window, 18.6 vs 0.8 ms for [8192, 1024]. On CPU the backward is
    written by hand as well (`_bf16_matmul_cpu`)."""
    lead = x.shape[: x.ndim - in_dims]
    k = math.prod(w.shape[:in_dims])
    x_MxK, w_KxN = x.reshape(-1, k), w.reshape(k, -1)
    cpu = jax.default_backend() == "cpu"
    if _bf16_as_float32(x_MxK):
        y_MxN = in_float32(dense, x_MxK, vary_like(w_KxN, x_MxK))
        y_MxN = y_MxN if bias is None else y_MxN + bias.astype(jnp.float32)
        return y_MxN.astype(x.dtype).reshape(*lead, *w.shape[in_dims:])
    if x_MxK.dtype == jnp.bfloat16 and cpu:
        w_KxN, bias = vary_like(w_KxN, x_MxK), vary_like(bias, x_MxK)
        y_MxN = _bf16_matmul_cpu(x_MxK, w_KxN, bias, x_MxK.dtype)
    elif x_MxK.dtype == jnp.bfloat16:
        y_MxN = _bf16_matmul(x_MxK, w_KxN, bias, x_MxK.dtype)
    else:
        if w_KxN.shape[0] > w_KxN.shape[1] and cpu:
            w_NxK = jax.lax.optimization_barrier(w_KxN.T)
            y_MxN = jnp.einsum("mk,nk->mn", x_MxK, w_NxK)
        else:
            y_MxN = x_MxK @ w_KxN
        y_MxN = y_MxN if bias is None else y_MxN + bias.astype(y_MxN.dtype)
    return y_MxN.reshape(*lead, *w.shape[in_dims:])


def row_major_transpose(a: jax.Array, axes: Sequence[int] | None = None) -> jax.Array:
    """`jnp.transpose(a, axes)` stored row-major. JAX emits a transpose as a layout change
    ({0,1}: no data moved), and XLA:CPU gives YNNPACK only dots whose operands are row-major and
    upcasts bfloat16 ones that are not: flattened behind the barrier, the transpose becomes a
    written copy (a few MB, against a matmul's tens of ms) that XLA cannot fold back."""
    t = jnp.transpose(a, axes)
    return jax.lax.optimization_barrier(t.reshape(-1)).reshape(t.shape)


def _row_major_mT(a: jax.Array) -> jax.Array:  # the last two axes swapped, row-major
    return row_major_transpose(a, (*range(a.ndim - 2), a.ndim - 1, a.ndim - 2))


def vary_like(a: jax.Array | None, x: jax.Array) -> jax.Array | None:
    """`a` marked as varying over the manual mesh axes x varies over (inside `shard_map`), as
    autodiff does implicitly for a plain dot; its transpose sums a's gradient over those axes.
    A custom_vjp must do it by hand: its backward's dw varies, and must match w's type."""
    if a is None:
        return None
    missing = jax.typeof(x).manual_axis_type.varying - jax.typeof(a).manual_axis_type.varying
    return jax.lax.pcast(a, tuple(sorted(missing)), to="varying") if missing else a


def batched(a_ZxMxK: jax.Array, b_ZxKxN: jax.Array, out_dtype=None) -> jax.Array:
    """`a @ b` over one batch axis Z (attention's blocks), accumulated in float32 and returned
    in `out_dtype` (default: a's dtype). bfloat16 on CPU takes `_bf16_matmul_cpu`; float32 on
    CPU the BLAS kernel (`llp_jax.kernels.blas`) where it is built and the blocks are big."""
    out_dtype = out_dtype or a_ZxMxK.dtype
    if _bf16_as_float32(a_ZxMxK):
        return in_float32(batched, a_ZxMxK, b_ZxKxN).astype(out_dtype)
    if a_ZxMxK.dtype == jnp.bfloat16 and jax.default_backend() == "cpu":
        return _bf16_matmul_cpu(a_ZxMxK, b_ZxKxN, None, jnp.dtype(out_dtype))
    if blas.takes(a_ZxMxK, b_ZxKxN, transpose_b=False):
        return blas.batched_matmul(a_ZxMxK, b_ZxKxN, transpose_b=False).astype(out_dtype)
    return _bf16_matmul(a_ZxMxK, b_ZxKxN, None, out_dtype)


def batched_nt(a_ZxMxK: jax.Array, b_ZxNxK: jax.Array, out_dtype=None) -> jax.Array:
    """`a @ b^T` over one batch axis Z (attention's scores q k^T). bfloat16 on CPU multiplies a
    row-major copy of b^T, the form YNNPACK takes; float32 on CPU the BLAS kernel (as
    `batched`); otherwise one einsum."""
    out_dtype = out_dtype or a_ZxMxK.dtype
    if _bf16_as_float32(a_ZxMxK):
        return in_float32(batched_nt, a_ZxMxK, b_ZxNxK).astype(out_dtype)
    if a_ZxMxK.dtype == jnp.bfloat16 and jax.default_backend() == "cpu":
        return _bf16_matmul_cpu(a_ZxMxK, _row_major_mT(b_ZxNxK), None, jnp.dtype(out_dtype))
    if blas.takes(a_ZxMxK, b_ZxNxK, transpose_b=True):
        return blas.batched_matmul(a_ZxMxK, b_ZxNxK, transpose_b=True).astype(out_dtype)
    y_ZxMxN = jnp.einsum("zmk,znk->zmn", a_ZxMxK, b_ZxNxK, preferred_element_type=jnp.float32)
    return y_ZxMxN.astype(out_dtype)


BF16_ENV = "LLP_JAX_CPU_BF16"  # native | float32; unset: what the CPU has


def cpu_bf16_matmuls() -> str:
    """How bfloat16 matmuls run on the CPU: 'native' (bfloat16 operands, float32 accumulation:
    x86 AVX512-BF16 or AMX, Arm BF16) or 'float32': the bfloat16 operands widened to float32
    and multiplied there. Each product of two bfloat16 numbers is exact in float32 and the sum
    is float32 either way, so the two agree to summation order; only the speed differs. Without
    bfloat16 units XLA:CPU converts inside its bfloat16 dots, slower than float32 dots: on a
    2-core AMD EPYC with AVX2 only, [8192, 256] @ [256, 1024] ran at 83 GFLOP/s as a bfloat16
    dot against 112 with the operands widened first, and the bfloat16 LLP train step took 1.56x
    the float32 one (3.87 vs 2.48 s) before this. `LLP_JAX_CPU_BF16` overrides the detection."""
    choice = os.environ.get(BF16_ENV, "")
    if choice in ("native", "float32"):
        return choice
    if choice:
        raise ValueError(f"{BF16_ENV}={choice!r}: use native, float32, or unset it (detect)")
    return "native" if _cpu_has_bf16_units() else "float32"


@functools.cache
def _cpu_has_bf16_units() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return bf16_units_in(f.read())
    except OSError:  # not Linux: keep XLA's own bfloat16 dots
        return True


def bf16_units_in(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists bfloat16 matmul units: x86 `flags` with avx512_bf16
    or amx_bf16, Arm `Features` with bf16."""
    flags = re.findall(r"^(?:flags|Features)\s*:(.*)$", cpuinfo, re.MULTILINE)
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(" ".join(flags).split()))


def _bf16_as_float32(x) -> bool:
    """A bfloat16 operand on a CPU without bfloat16 units: multiplied in float32."""
    return (
        x.dtype == jnp.bfloat16
        and jax.default_backend() == "cpu"
        and cpu_bf16_matmuls() == "float32"
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def in_float32(product, a, b):
    """`product(a, b)` (a float32 matmul) of bfloat16 a and b widened to float32, for CPUs
    without bfloat16 units. Its backward keeps a and b in bfloat16 and widens them again, where
    autodiff would keep the widened float32 copies, more memory than float32 itself: the
    bfloat16 LLP's train plan at the comparison's config (n 512, d 128) 243 -> 179 MiB
    (float32: 228), at the step benchmark's 960 -> 868 MiB (float32: 865). The widening done
    twice costs time: that step 3.01 vs 2.85 s (alternated in one process, AVX2 EPYC)."""
    return product(a.astype(jnp.float32), b.astype(jnp.float32))


def _in_float32_fwd(product, a, b):
    return in_float32(product, a, b), (a, b)


def _in_float32_bwd(product, residuals, dy):
    a, b = residuals
    _, vjp = jax.vjp(product, a.astype(jnp.float32), b.astype(jnp.float32))
    da, db = vjp(dy.astype(jnp.float32))
    return da.astype(a.dtype), db.astype(b.dtype)


in_float32.defvjp(_in_float32_fwd, _in_float32_bwd)


def _cpu_bf16(x) -> bool:  # the native bfloat16 CPU forms (head-major, row-major transposes)
    return x.ndim == 4 and x.dtype == jnp.bfloat16 and jax.default_backend() == "cpu"


def _head_major(x_BxTxHxD):  # [B, T, H, D] -> [B*H, T, D]
    return jnp.moveaxis(x_BxTxHxD, -2, 1).reshape(-1, *x_BxTxHxD.shape[-3:-2], x_BxTxHxD.shape[-1])


def head_scores(q_BxQxHxD, k_BxKxHxD):
    """Float32 logits [B, H, Q, K] (attention's explicit-mask path). bfloat16 on CPU goes
    head-major through `batched_nt` (one batch axis, the dot form and backward XLA:CPU gives
    YNNPACK); otherwise one einsum. With `head_mix`: the bfloat16 PerceiverAR step 1.12x
    (0.376 -> 0.337 s, processes alternated, load ~1.3)."""
    if _bf16_as_float32(q_BxQxHxD):
        return in_float32(head_scores, q_BxQxHxD, k_BxKxHxD)
    if not _cpu_bf16(q_BxQxHxD):
        return jnp.einsum("...qhd,...khd->...hqk", q_BxQxHxD, k_BxKxHxD,
                          preferred_element_type=jnp.float32)  # fmt: skip
    B, Q, H, _ = q_BxQxHxD.shape
    logits = batched_nt(_head_major(q_BxQxHxD), _head_major(k_BxKxHxD), jnp.float32)
    return logits.reshape(B, H, Q, -1)


def head_mix(probs_BxHxQxK, v_BxKxHxD):
    """probs @ v -> [B, Q, H, D], like `head_scores` (head-major `batched` in bf16 on CPU)."""
    if _bf16_as_float32(v_BxKxHxD):
        return in_float32(head_mix, probs_BxHxQxK, v_BxKxHxD).astype(v_BxKxHxD.dtype)
    if not _cpu_bf16(v_BxKxHxD):
        return jnp.einsum("...hqk,...khd->...qhd", probs_BxHxQxK, v_BxKxHxD)
    B, H, Q, K = probs_BxHxQxK.shape
    o_ZxQxD = batched(probs_BxHxQxK.reshape(B * H, Q, K), _head_major(v_BxKxHxD))
    return jnp.moveaxis(o_ZxQxD.reshape(B, H, Q, -1), 1, 2)


def _bf16_matmul(a_xMxK, b_xKxN, bias_N, out_dtype):
    """a @ b (+ bias) over any leading batch axes: float32 accumulation, then `out_dtype`."""
    y = jnp.matmul(a_xMxK, b_xKxN, preferred_element_type=jnp.float32)
    return (y if bias_N is None else y + bias_N.astype(jnp.float32)).astype(out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bf16_matmul_cpu(a_xMxK, b_xKxN, bias_N, out_dtype):
    """The bfloat16 matmul on CPU (`dense` 2-D, `batched` over one batch axis), with a backward
    whose dots are in the form XLA:CPU hands to YNNPACK (AMX on recent Intel CPUs): da = dy @ b^T
    and db = (dy^T @ a)^T with the transposes written out row-major, bfloat16 operands, float32
    accumulation. Autodiff's own backward contracts a transposed operand; XLA:CPU refuses those
    to YNNPACK and upcasts them to float32 matmuls. The incoming gradient is rounded to
    bfloat16 first (as flash-attention kernels round dS); the bias's gradient is a float32 sum.
    Measured on a 2-core Xeon with AMX: forward + backward of [8192, 256] @ [256, 1024] 41.6 ->
    18.7 ms (2.2x); the bfloat16 LLP train step 2.03 -> 1.63 s with it in `dense` and the head,
    -> 1.34 s with it in the blocked attention too (processes alternated, load ~1.5)."""
    return _bf16_matmul(a_xMxK, b_xKxN, bias_N, out_dtype)


def _bf16_matmul_cpu_fwd(a_xMxK, b_xKxN, bias_N, out_dtype):
    return _bf16_matmul(a_xMxK, b_xKxN, bias_N, out_dtype), (a_xMxK, b_xKxN, bias_N)


def _bf16_matmul_cpu_bwd(out_dtype, residuals, dy_xMxN):
    a_xMxK, b_xKxN, bias_N = residuals
    dy_xMxN = dy_xMxN.astype(jnp.bfloat16)
    da = _bf16_matmul(dy_xMxN, _row_major_mT(b_xKxN), None, a_xMxK.dtype)
    # db = a^T @ dy, computed as (dy^T @ a)^T: the row-major copy is of dy, not of a. a is
    # usually a recomputed activation (a LayerNorm, GELU or the attention's normalised output,
    # rematerialised in the backward), and XLA fuses that work into the transposing copy as
    # slow strided loops; dy's transpose is a plain one. bfloat16 steps (alternated in one
    # process): LLP 1.06x, PerceiverAR 1.15x, the dense transformer 1.37x. The barrier keeps
    # XLA from giving the dot a transposed output layout, which YNNPACK refuses (XLA then
    # fails: no bf16 x bf16 -> f32 DotThunk).
    dbT_xNxK = _bf16_matmul(_row_major_mT(dy_xMxN), a_xMxK, None, jnp.float32)
    db = _row_major_mT(jax.lax.optimization_barrier(dbT_xNxK)).astype(b_xKxN.dtype)
    if bias_N is not None:
        rows = tuple(range(dy_xMxN.ndim - 1))
        bias_N = jnp.sum(dy_xMxN.astype(jnp.float32), axis=rows).astype(bias_N.dtype)
    return da, db, bias_N


_bf16_matmul_cpu.defvjp(_bf16_matmul_cpu_fwd, _bf16_matmul_cpu_bwd)
