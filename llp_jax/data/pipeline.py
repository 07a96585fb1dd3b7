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

import dataclasses
from collections.abc import Mapping

import grain
import jax
import ml_collections
import numpy as np

from llp_jax.data import corpus as corpus_lib
from llp_jax.data import token_cache, tokenizers
from llp_jax.data.corpus import DataError

Batch = dict[str, np.ndarray]  # {'inputs': int32[B, T], 'targets': int32[B, T]}

# In-memory data: threads only add GIL contention (grain docs), and this machine has 2 cores.
_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def default_data_config() -> ml_collections.ConfigDict:
    """Defaults of `config.data`, read by `build_datasets`."""
    c = ml_collections.ConfigDict()
    # 'austen' (embedded), 'a.txt,folder/' (corpus.load_text_corpus), or a tfds dataset:
    # 'tfds:wikitext103' ('tfds:wikitext103/raw'), 'tfds:pg19', 'tfds:enwik8', 'tfds-catalog:NAME'.
    c.corpus = "austen"
    c.tokenizer = "byte"  # 'byte' | 'sentencepiece' | path/to/existing.model
    c.vocab_size = 2048  # SentencePiece only.
    c.sp_model_type = "unigram"  # 'unigram' | 'bpe'.
    c.cache_dir = ""  # '' = ~/.cache/llp_jax (SentencePiece models).
    c.seed = 0  # Shuffle order and window offsets.
    c.shuffle = True
    c.train_stride = 0  # Tokens between training window starts; 0 = seq_len (non-overlapping).
    c.random_offset = False  # Shift all windows by a random 0..stride-1 each epoch.
    # tfds corpora only (see tfds_data.py):
    c.data_dir = ""  # Prepared datasets; '' = tfds' default (~/tensorflow_datasets).
    c.manual_dir = ""  # Raw files: wiki.*.tokens, the PG-19 train/validation/test tree, enwik8.
    c.token_dir = ""  # Tokenised splits; '' = <prepared dataset folder>/llp_tokens.
    c.chunk_tokens = 65536  # Tokens per ArrayRecord record of a tokenised split.
    c.sp_sample_chars = 20_000_000  # SentencePiece trains on this much of the train split.
    c.eval_max_tokens = 0  # eval_tokens() keeps the first this many tokens; 0 = whole split.
    c.train_sample_tokens = 10_000_000  # tokens['train'] (unigram baseline) is a sample this big.
    c.text_feature = ""  # 'tfds-catalog:' datasets: the text feature; '' = the first Text one.
    return c


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
    index_shuffle costs ~2.7 ms per element for datasets of ~10 elements (still ~0.3 ms at 100),
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


@dataclasses.dataclass
class Datasets:
    """Everything the trainer and evaluators need from the data layer.

    Attributes:
      tokenizer: the tokenizer (its vocab_size sizes the model's embedding).
      corpus: the text corpus with its splits.
      tokens: split -> int32[N] token stream (tfds corpora: 'train' is a sample and evaluation
        splits may be capped by `eval_max_tokens`; read lazily).
      words: split -> whitespace word count (word-level perplexity = exp(total NLL / words));
        of the kept part where `eval_max_tokens` caps an evaluation split.
      num_bytes: split -> UTF-8 byte count (bits per byte = total NLL / ln 2 / bytes), likewise.
      seq_len: the model context T the training windows are cut for.
      data_config: the `config.data` used.
      process_index / process_count: this process' data shard.
      train_tokens: the whole training stream when `tokens['train']` is only a sample (tfds
        corpora: `token_cache.TokenChunks` on disk); None = `tokens['train']`.
      num_tokens: split -> tokens in the whole split; None = `len(tokens[split])`.
    """

    tokenizer: tokenizers.Tokenizer
    corpus: corpus_lib.Corpus
    tokens: Mapping[str, np.ndarray]
    words: Mapping[str, int]
    num_bytes: Mapping[str, int]
    seq_len: int
    data_config: ml_collections.ConfigDict
    process_index: int
    process_count: int
    train_tokens: token_cache.TokenChunks | np.ndarray | None = None
    num_tokens: Mapping[str, int] | None = None

    def train_iterator(
        self, batch_size: int, *, num_epochs: int | None = None
    ) -> grain.DatasetIterator:
        """A fresh training iterator with per-process batch size `batch_size` (infinite by default)."""
        c = self.data_config
        return make_train_iterator(
            self.tokens["train"] if self.train_tokens is None else self.train_tokens,
            seq_len=self.seq_len,
            batch_size=batch_size,
            seed=c.seed,
            shuffle=c.shuffle,
            stride=c.train_stride,
            random_offset=c.get("random_offset", False),
            num_epochs=num_epochs,
            process_index=self.process_index,
            process_count=self.process_count,
        )

    def eval_tokens(self, split: str = "validation") -> np.ndarray:
        """The plain token stream of a split, int32[N], for perplexity protocols."""
        return eval_tokens(self, split)

    def summary(self) -> str:
        """One line per split: tokens, words, bytes; for run logs."""
        head = (
            f"corpus {self.corpus.name} ({self.corpus.description}); "
            f"tokenizer {self.tokenizer.name} vocab {self.tokenizer.vocab_size}"
        )
        num_tokens = self.num_tokens or {s: len(self.tokens[s]) for s in self.tokens}
        rows = [
            f"  {s}: {num_tokens[s]:,} tokens, {self.words[s]:,} words, {self.num_bytes[s]:,} bytes"
            for s in num_tokens
        ]
        return "\n".join([head, *rows])


def eval_tokens(datasets: Datasets, split: str = "validation") -> np.ndarray:
    """The plain token stream of `split` ('train', 'validation' or 'test'), int32[N]."""
    if split not in datasets.tokens:
        raise ValueError(f"Unknown split {split!r}; use one of {sorted(datasets.tokens)}.")
    return datasets.tokens[split]


def build_datasets(
    data_config: ml_collections.ConfigDict | None,
    seq_len: int,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Datasets:
    """Loads the corpus, builds the tokenizer, tokenizes every split and checks the train length.

    Embedded and text-file corpora are tokenized in memory; 'tfds:' / 'tfds-catalog:' corpora
    are prepared and tokenized once on disk and read from there (see tfds_data.py).

    Args:
      data_config: `config.data` (fields of `default_data_config()`; missing fields take defaults).
      seq_len: model context length T.
      process_index: this process' shard; default `jax.process_index()`.
      process_count: number of shards; default `jax.process_count()`.

    Returns:
      `Datasets`; call `.train_iterator(per_process_batch_size)` for training batches.

    Raises:
      DataError: bad corpus input, or a training split shorter than one window of seq_len + 1 tokens.
    """
    config = default_data_config()
    if data_config is not None:
        config.update(data_config)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if isinstance(config.corpus, str) and config.corpus.startswith(("tfds:", "tfds-catalog:")):
        from llp_jax.data import tfds_data  # Imports tensorflow_datasets: only when needed.

        return tfds_data.build_tfds_datasets(
            config, seq_len, process_index=process_index, process_count=process_count
        )
    corpus = corpus_lib.load_corpus(config.corpus)
    tokenizer = tokenizers.make_tokenizer(
        config.tokenizer,
        vocab_size=config.vocab_size,
        train_text=corpus.splits["train"],
        cache_dir=config.cache_dir,
        model_type=config.sp_model_type,
    )
    tokens = {s: tokenizer.encode(text) for s, text in corpus.splits.items()}
    if len(tokens["train"]) < seq_len + 1:
        raise DataError(
            f"Corpus {config.corpus!r} has {len(tokens['train'])} training tokens, fewer than one "
            f"training window of seq_len + 1 = {seq_len + 1}; use a larger corpus or a smaller seq_len."
        )
    return Datasets(
        tokenizer=tokenizer,
        corpus=corpus,
        tokens=tokens,
        words=corpus.words,
        num_bytes={s: len(t.encode("utf-8")) for s, t in corpus.splits.items()},
        seq_len=seq_len,
        data_config=config,
        process_index=process_index,
        process_count=process_count,
    )
