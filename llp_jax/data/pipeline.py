"""Input pipeline: token streams -> shuffled, sharded, checkpointable batches of windows (Grain).

A split is tokenized once into one flat `np.int32` stream. Training examples are windows of
`seq_len + 1` tokens (`inputs = w[:-1]`, `targets = w[1:]`) starting every `stride` tokens.
The pipeline is a `grain.MapDataset` over window *indices*, so it is random-access: its iterator
state is a single integer (`{'next_index': k}`), saved with the model through Orbax
(`grain.checkpoint.CheckpointSave`), and a resumed run sees exactly the batches it would have seen.

Element i of the infinite stream (all processes agree on it) is window `perm_e[i mod n]` of epoch
`e = i // n`; process p of P takes elements p, p + P, p + 2P, ... So at any step the P local
batches together are exactly the batch a single process with the global batch size would draw:
the data order does not depend on the number of hosts.
"""

from __future__ import annotations

import grain
import jax
import numpy as np

from llp_jax.data import token_cache
from llp_jax.data.corpus import DataError

Batch = dict[str, np.ndarray]  # {'inputs': int32[B, T], 'targets': int32[B, T]}

# In-memory data: reader threads only add GIL contention (grain docs).
_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def num_windows(num_tokens: int, seq_len: int, stride: int, random_offset: bool = False) -> int:
    """Windows of seq_len + 1 tokens per epoch; the same every epoch whatever the offset."""
    window = seq_len + 1
    if num_tokens < window:
        return 0
    max_offset = min(stride - 1, num_tokens - window) if random_offset else 0
    return (num_tokens - window - max_offset) // stride + 1


class _WindowAt:
    """Maps a global element index to its {'inputs', 'targets'} window (a grain map_with_index fn).

    Shuffling is a per-epoch NumPy permutation rather than grain's `shuffle`: grain 0.2.18's
    index_shuffle costs milliseconds per element for datasets of ~10 elements (still a lot at 100),
    which made small-corpus runs and tests input-bound. The permutation is cached per epoch.
    """

    def __init__(self, tokens_N, *, seq_len, stride, n, seed, shuffle, random_offset):
        self.tokens_N, self.seq_len, self.stride, self.n = tokens_N, seq_len, stride, n
        self.seed, self.shuffle = seed, shuffle
        self.max_offset = min(stride - 1, len(tokens_N) - seq_len - 1) if random_offset else 0
        self._epoch, self._perm, self._offset = -1, None, 0

    def _set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        self._perm = rng.permutation(self.n) if self.shuffle else None
        self._offset = int(rng.integers(0, self.max_offset + 1)) if self.max_offset else 0
        self._epoch = epoch

    def __call__(self, index: int, _: int) -> dict[str, np.ndarray]:
        epoch, position = divmod(index, self.n)
        if epoch != self._epoch:
            self._set_epoch(epoch)
        window = int(self._perm[position]) if self._perm is not None else position
        start = window * self.stride + self._offset
        w_L = self.tokens_N[start : start + self.seq_len + 1]
        return {"inputs": w_L[:-1], "targets": w_L[1:]}


def make_train_dataset(
    tokens_N: np.ndarray,
    *,
    seq_len: int,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    stride: int = 0,
    random_offset: bool = False,
    num_epochs: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.MapDataset:
    """Batched, sharded windows over a token stream, as a random-access `grain.MapDataset`.

    Args:
      tokens_N: the split's token stream, int32[N], or `token_cache.TokenChunks` (read from disk).
      seq_len: model context T; windows hold T + 1 tokens.
      batch_size: per-process batch size B (global batch = B * process_count).
      seed: shuffle / offset seed; the same seed gives the same batches.
      shuffle: shuffle windows, differently each epoch.
      stride: tokens between window starts; 0 means seq_len (non-overlapping windows).
      random_offset: shift all windows of an epoch by a deterministic random 0..stride-1 tokens, so
        successive epochs see different window boundaries.
      num_epochs: None repeats forever (training); an int gives a finite dataset.
      process_index: this process' shard; default `jax.process_index()`.
      process_count: number of shards; default `jax.process_count()`.

    Returns:
      A MapDataset whose elements are {'inputs': int32[B, T], 'targets': int32[B, T]}.

    Raises:
      DataError: the stream is shorter than one window.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    stride = stride or seq_len
    if seq_len <= 0 or batch_size <= 0 or stride <= 0:
        raise ValueError(
            f"Need seq_len, batch_size, stride > 0; got {seq_len}, {batch_size}, {stride}."
        )
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count}).")
    if not isinstance(tokens_N, token_cache.TokenChunks):
        tokens_N = np.asarray(tokens_N, dtype=np.int32)
    n = num_windows(len(tokens_N), seq_len, stride, random_offset)
    if n == 0:
        raise DataError(
            f"The training split has {len(tokens_N)} tokens, fewer than one training window of "
            f"seq_len + 1 = {seq_len + 1}; use a larger corpus or a smaller seq_len."
        )
    if n == 1 and stride > seq_len and num_windows(len(tokens_N), seq_len, seq_len) > 1:
        raise DataError(
            f"data.train_stride={stride} leaves one training window of the split's "
            f"{len(tokens_N):,} tokens, which every batch would repeat; use a stride of at most "
            f"{len(tokens_N) - seq_len - 1:,} (0 = seq_len, windows side by side)"
        )
    window_at = _WindowAt(
        tokens_N,
        seq_len=seq_len,
        stride=stride,
        n=n,
        seed=seed,
        shuffle=shuffle,
        random_offset=random_offset,
    )
    ds = grain.MapDataset.range(n).repeat(num_epochs).map_with_index(window_at)
    ds = ds[process_index::process_count]
    return ds.batch(batch_size, drop_remainder=True)


def make_train_iterator(tokens_N: np.ndarray, **kwargs) -> grain.DatasetIterator:
    """A checkpointable iterator over `make_train_dataset(tokens_N, **kwargs)`.

    The iterator has `get_state()` / `set_state()` (a JSON-able dict) and can be saved inside an Orbax
    checkpoint with `grain.checkpoint.CheckpointSave(it)` / restored with `CheckpointRestore(it)`.
    """
    return iter(make_train_dataset(tokens_N, **kwargs).to_iter_dataset(_READ_OPTIONS))


def make_global_batch(local_batch, sharding: jax.sharding.Sharding):
    """Turns this process' numpy batch (any pytree) into global `jax.Array`s laid out by `sharding`.

    Each process passes its own rows; the global batch dimension is process_count times the local
    one (one process: the local batch is the global batch, split over local devices).
    """
    return jax.tree.map(
        lambda x_BxT: jax.make_array_from_process_local_data(sharding, x_BxT), local_batch
    )
