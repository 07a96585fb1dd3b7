"""In-training validation: the mean loss over the first windows of the validation stream, a cheap
estimate logged every `train.eval_every` steps (llp_jax.evaluation has the full protocols)."""

from __future__ import annotations

import jax
import numpy as np

from llp_jax.data import make_global_batch
from llp_jax.errors import ConfigError


def evaluate_windows(
    eval_step, params, tokens_N: np.ndarray, seq_len: int, batch_size: int, max_batches: int,
    sharding,
) -> float:  # fmt: skip
    """Mean loss over up to `max_batches` batches of non-overlapping windows of `tokens_N`. A
    stream shorter than one batch is scored as one smaller batch (a multiple of the mesh's
    data-parallel ways: `min_windows`); NaN only below that (`check_validation` says so up front).
    """
    available = (len(tokens_N) - 1) // seq_len
    num = min(available, max_batches * batch_size) // batch_size * batch_size
    if num == 0:  # one short batch (compiled once more, at its own size)
        ways = min_windows(sharding)
        num = batch_size = available // ways * ways
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


def min_windows(sharding) -> int:
    """The fewest validation windows a batch can hold: one per data-parallel shard."""
    mesh, spec = sharding.mesh, sharding.spec
    axes = spec[0] if len(spec) else None
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    ways = 1
    for axis in axes:
        ways *= mesh.shape[axis]
    return ways


def check_validation(tokens_N: np.ndarray, seq_len: int, sharding, where: str) -> None:
    """One line, before any training, when the validation split cannot fill one batch of
    windows (every logged validation loss would be NaN, and the report would have none)."""
    need = min_windows(sharding) * seq_len + 1
    if len(tokens_N) < need:
        windows = (
            "one window"
            if need == seq_len + 1
            else f"{need // seq_len} windows (one per data shard)"
        )
        raise ConfigError(
            f"the validation split of {where} has {len(tokens_N):,} tokens, fewer than "
            f"{windows} of model.seq_len={seq_len} + 1 = {need:,}; give more validation text "
            "(a longer corpus or more documents) or a smaller model.seq_len"
        )
