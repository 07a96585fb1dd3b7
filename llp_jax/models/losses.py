"""Next-token cross-entropy from the final hidden states, fused with the output head and computed
in row chunks, so that the float32 `[B, P, V]` logits are never held (nor their gradient).

`head_nll_sum(h_RxD, w_DxV, b_V, targets_R)` is the sum over rows of
`logsumexp(h @ w + b) - (h @ w + b)[target]`. Without differentiation it is a scan over chunks
of rows. Under `jax.grad` its forward pass (a `custom_vjp`) also computes the gradients of the
sum — for each chunk: softmax minus the one-hot target, then dh = dlogits @ w^T,
dw += h^T @ dlogits, db += sum of dlogits — so the backward pass only scales them by the
incoming cotangent: the head's three matmuls run once each, as in the unfused step, while the
elementwise passes over the logits (bias add, log-softmax, its gradient, the copies between
them) touch one chunk at a time. The reference is `optax.softmax_cross_entropy_with_integer_labels`
on the full logits; tests/models/test_losses.py holds both equal (values and gradients).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from llp_jax.models.matmul import cpu_bf16_matmuls, row_major_transpose


def perplexity(nats: float) -> float:
    """exp(nats) as a Python float, `inf` past float64's range: a diverged model's mean loss can
    pass 709.8 nats (huge logits), where `math.exp` raises OverflowError, and a cap such as
    exp(min(loss, 50)) would report a finite, made-up figure; nan stays nan."""
    try:
        return math.exp(nats)
    except OverflowError:
        return math.inf


def perplexity_text(ppl: float | None) -> str:
    """A perplexity as tables and logs show it: three decimals, e-notation from a billion on (a
    diverged model's exp(255) has 111 digits), "-" for a figure that does not apply (None)."""
    if ppl is None:
        return "-"
    return format(ppl, ".3f" if abs(ppl) < 1e9 else ".3e")


CHUNK_ROWS = 1024  # rows (batch x positions) per chunk: [1024, V] float32 logits at a time


def chunk_rows(rows: int, target: int = CHUNK_ROWS) -> int:
    """The chunk: the largest divisor of `rows` that is at most `target` (rows itself if small)."""
    if rows <= target:
        return rows
    return max(d for d in range(1, target + 1) if rows % d == 0)


def _logits(h_CxD, w_DxV, b_V):
    return jnp.dot(h_CxD, w_DxV, preferred_element_type=jnp.float32) + b_V.astype(jnp.float32)


def _split(h_RxD, targets_R, chunk: int):
    rows, d = h_RxD.shape
    return h_RxD.reshape(rows // chunk, chunk, d), targets_R.reshape(rows // chunk, chunk)


def _chunk_nll(logits_CxV, targets_C):
    lse_C = jax.nn.logsumexp(logits_CxV, axis=-1)
    picked_C = jnp.take_along_axis(logits_CxV, targets_C[:, None], axis=-1)[:, 0]
    return lse_C, jnp.sum(lse_C - picked_C)


def head_nll_sum(h_RxD, w_DxV, b_V, targets_R):
    """Sum of the rows' next-token negative log-likelihoods (float32 scalar). bfloat16 on a CPU
    without bfloat16 units runs in float32 (`matmul.cpu_bf16_matmuls`)."""
    if h_RxD.dtype == jnp.bfloat16 and jax.default_backend() == "cpu":
        if cpu_bf16_matmuls() == "float32":
            widen = lambda x: x.astype(jnp.float32)  # noqa: E731
            return _head_nll_sum(widen(h_RxD), widen(w_DxV), widen(b_V), targets_R)
    return _head_nll_sum(h_RxD, w_DxV, b_V, targets_R)


@jax.custom_vjp
def _head_nll_sum(h_RxD, w_DxV, b_V, targets_R):
    h_NxCxD, t_NxC = _split(h_RxD, targets_R, chunk_rows(h_RxD.shape[0]))

    def body(total, xs):
        h_CxD, t_C = xs
        return total + _chunk_nll(_logits(h_CxD, w_DxV, b_V), t_C)[1], None

    return jax.lax.scan(body, jnp.float32(0.0), (h_NxCxD, t_NxC))[0]


def _forward(h_RxD, w_DxV, b_V, targets_R):
    rows, d = h_RxD.shape
    h_NxCxD, t_NxC = _split(h_RxD, targets_R, chunk_rows(rows))
    vocab = w_DxV.shape[1]
    # dw = h^T @ dlogits contracts the rows, the leading axis of both operands; XLA:CPU runs that
    # transposed-operand form at half its matmul rate on this shape ([1024, 256]^T @ [1024, 8192]:
    # 87 vs 170 GFLOP/s on the AMD EPYC). A transposed copy of h (the barrier keeps XLA from
    # folding the transpose back into the dot) makes it a plain matmul: the head's fwd + bwd at
    # 8192 rows, d 256, V 8192 went 1.02 -> 0.81 s, the LLP train step 2.98 -> 2.79 s.
    if h_RxD.dtype == jnp.bfloat16 and jax.default_backend() == "cpu":
        # bfloat16 on CPU: both backward operands transposed row-major (see
        # matmul.row_major_transpose); a transposed layout would make XLA:CPU upcast the dots.
        hT_NxDxC = row_major_transpose(h_NxCxD, (0, 2, 1))
        wT_VxD = row_major_transpose(w_DxV)
    else:
        hT_NxDxC = jax.lax.optimization_barrier(jnp.swapaxes(h_NxCxD, 1, 2))
        wT_VxD = w_DxV.T

    def body(carry, xs):
        total, dw_DxV, db_V = carry
        h_CxD, hT_DxC, t_C = xs
        logits_CxV = _logits(h_CxD, w_DxV, b_V)
        lse_C, nll = _chunk_nll(logits_CxV, t_C)
        # d(sum nll)/d logits = softmax - one_hot(target)
        dlogits_CxV = jnp.exp(logits_CxV - lse_C[:, None])
        dlogits_CxV = dlogits_CxV - jax.nn.one_hot(t_C, vocab, dtype=jnp.float32)
        dlogits_CxV = dlogits_CxV.astype(h_CxD.dtype)
        dh_CxD = jnp.dot(dlogits_CxV, wT_VxD, preferred_element_type=jnp.float32)
        dw_DxV = dw_DxV + jnp.dot(hT_DxC, dlogits_CxV, preferred_element_type=jnp.float32)
        db_V = db_V + jnp.sum(dlogits_CxV, axis=0, dtype=jnp.float32)
        return (total + nll, dw_DxV, db_V), dh_CxD.astype(h_CxD.dtype)

    zeros = (
        jnp.float32(0.0),
        jnp.zeros(w_DxV.shape, jnp.float32),
        jnp.zeros((vocab,), jnp.float32),
    )
    (total, dw_DxV, db_V), dh_NxCxD = jax.lax.scan(body, zeros, (h_NxCxD, hT_NxDxC, t_NxC))
    grads = (dh_NxCxD.reshape(rows, d), dw_DxV.astype(w_DxV.dtype), db_V.astype(b_V.dtype))
    return total, (grads, targets_R)


def _backward(residuals, g):
    (dh, dw, db), targets_R = residuals
    scale = lambda x: (g * x.astype(jnp.float32)).astype(x.dtype)  # noqa: E731
    zero_t = jnp.zeros(targets_R.shape, jax.dtypes.float0)  # integer input: no gradient
    return scale(dh), scale(dw), scale(db), zero_t


_head_nll_sum.defvjp(_forward, _backward)


def fused_rows(rows: int) -> bool:
    """Whether the chunked path pays: it needs a chunk of at least 64 rows dividing `rows` (an
    awkward row count, e.g. a prime, takes the unfused path)."""
    return chunk_rows(rows) >= min(rows, 64)
