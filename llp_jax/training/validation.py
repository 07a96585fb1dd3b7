"""In-training validation: the mean loss over the first windows of the validation stream, a cheap
estimate logged every `train.eval_every` steps (llp_jax.evaluation has the full protocols)."""

from __future__ import annotations

import jax
import numpy as np

from llp_jax.data import make_global_batch


def evaluate_windows(
    eval_step, params, tokens_N: np.ndarray, seq_len: int, batch_size: int, max_batches: int,
    sharding,
) -> float:  # fmt: skip
    """Mean loss over up to `max_batches` batches of non-overlapping windows of `tokens_N`
    (NaN when the stream holds no whole batch of windows)."""
    num = min((len(tokens_N) - 1) // seq_len, max_batches * batch_size)
    num = num // batch_size * batch_size
    if num == 0:
        return float("nan")
    windows = np.stack([tokens_N[s : s + seq_len + 1] for s in np.arange(num) * seq_len])
    nll, count = 0.0, 0.0
    for i in range(0, num, batch_size):
        # Each process contributes its own rows of the global batch.
        chunk = windows[i : i + batch_size][jax.process_index() :: jax.process_count()]
        batch = make_global_batch({"inputs": chunk[:, :-1], "targets": chunk[:, 1:]}, sharding)
        out = eval_step(params, batch)
        nll, count = nll + float(out["nll_sum"]), count + float(out["tokens"])
    return nll / count
