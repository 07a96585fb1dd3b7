"""The blocked path's window-free form: each query block against key blocks b - back .. b.

`attention._blocked` (LLP, S^2-Attn) hands its segment-batched queries, keys and values here.
Instead of concatenating shifted copies of K and V into windows ([B, nb, W, H, D]), each part j
scores query blocks j.. against key blocks ..nb - j (slices of the same arrays) and the parts
share one softmax: a running max, exp, and a denominator summed over the parts, the division
applied to the (small) output. The first j blocks have no key block b - j, so part j's small
per-row results are zero-padded in front. 1.25x faster than the window form (fwd + bwd) at the
step benchmark's shapes (B 8, n 1024, s 256, H 4, D 64).

Measured and not taken: XLA:CPU runs each `[256, 64] x [64, 256]` block matmul of the batch on
one thread, so running the parts in 16 independent (batch, head) groups made attention alone
1.24x faster (fwd + bwd, 2-core AMD EPYC), but the code-faithful train step 0.95x (2.97 vs
2.83 s, alternated in one process): in the step, other layers' work already fills the second
core, and each group adds its own layout copies (433 transposes in the step's HLO instead of 29).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from llp_jax.models import dropout as dropout_lib
from llp_jax.models import matmul
from llp_jax.models.masks import Windows


def window_parts(w: Windows, q_BxNxSxHxD, k_BxNxSxHxD, v_BxNxSxHxD, allowed, dropout_rate, rng):
    """`attention._dense` over each block's window [blocks b - back .. b], without the window.

    Args:
      w: the static block layout.
      q_BxNxSxHxD, k_BxNxSxHxD, v_BxNxSxHxD: `w.split` of queries (unscaled), keys and values.
      allowed: [nb or 1, s, W] (every example) or [B, nb, s, W] boolean window mask.
      dropout_rate, rng: dropout on the probabilities; the keep-mask is drawn on the whole
        window ([B * nb, H, s, W]) exactly as `_dense` draws it, so both drop alike.

    Returns:
      [B, nb, s, H, D].

    The parts run head-major ([B, H, nb, s, D]) and every matmul has one batch axis
    ([B*H*blocks, s, D]): XLA:CPU picks slow dot layouts for several batch axes, and the
    one-axis form measured 1.23x faster on this attention alone (fwd + bwd, same shapes).
    """
    B, nb, s, H, D = q_BxNxSxHxD.shape
    back, neg = w.back, jnp.finfo(jnp.float32).min
    keep_BxHxNxSxW = None
    if rng is not None and dropout_rate > 0.0:
        W = (back + 1) * s
        keep = dropout_lib.keep_mask(rng, dropout_rate, (B * nb, H, s, W))
        keep_BxHxNxSxW = jnp.moveaxis(keep.reshape(B, nb, H, s, W), 2, 1)
    head_major = lambda x: jnp.moveaxis(x, 3, 1)  # noqa: E731  [B, nb, s, H, D] -> [B, H, nb, s, D]
    q, kb, vb = head_major(q_BxNxSxHxD * D**-0.5), head_major(k_BxNxSxHxD), head_major(v_BxNxSxHxD)
    # allowed: [nb or 1, s, W] (every example) or [B, nb, s, W]; heads go at axis 1.
    allowed = allowed[:, None] if jnp.ndim(allowed) == 4 else allowed

    def flat(x):  # [B, H, n, s, D] -> [B*H*n, s, D]
        return x.reshape(-1, *x.shape[-2:])

    def front(x, j, value=0.0):  # j blocks of `value` in front: part j starts at block j
        return jnp.pad(x, ((0, 0), (0, 0), (j, 0), (0, 0), (0, 0)), constant_values=value)

    cols = lambda j: slice((back - j) * s, (back - j + 1) * s)  # noqa: E731  part j in the window
    parts = []
    for j in range(back, -1, -1):
        if j >= nb:
            continue
        logits = matmul.batched_nt(flat(q[:, :, j:]), flat(kb[:, :, : nb - j]), jnp.float32)
        logits = logits.reshape(B, H, nb - j, s, s)
        parts.append((j, jnp.where(allowed[..., j:, :, cols(j)], logits, neg)))
    row_max = None
    for j, logits in parts:
        m = front(logits.max(-1, keepdims=True), j, neg)
        row_max = m if row_max is None else jnp.maximum(row_max, m)
    row_max = jax.lax.stop_gradient(row_max)  # any shift gives the same softmax
    denom, out = 0.0, 0.0
    for j, logits in parts:
        e = jnp.exp(logits - row_max[:, :, j:])
        denom = denom + front(e.sum(-1, keepdims=True), j)
        if keep_BxHxNxSxW is not None:
            e = dropout_lib.apply_mask(e, keep_BxHxNxSxW[:, :, j:, :, cols(j)], dropout_rate)
        o = matmul.batched(flat(e.astype(vb.dtype)), flat(vb[:, :, : nb - j]))
        out = out + front(o.reshape(B, H, nb - j, s, D), j)
    return jnp.moveaxis(out / denom, 1, 3).astype(vb.dtype)  # [B, nb, s, H, D]
