"""What the trainer and the evaluators get from the data layer: `build_datasets(config.data, n)`
loads the corpus, builds the tokenizer, tokenises every split and hands back a `Datasets`.

Embedded and text-file corpora are tokenised in memory; 'tfds:' / 'tfds-catalog:' corpora are
prepared and tokenised once on disk and read from there (tfds_data.py, imported only for them:
it loads tensorflow_datasets).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import grain
import jax
import numpy as np

from llp_jax.data import corpus as corpus_lib
from llp_jax.data import pipeline, token_cache, tokenizers
from llp_jax.data.config import DataConfig
from llp_jax.data.corpus import DataError


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
      data_config: the data section used.
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
    data_config: DataConfig
    process_index: int
    process_count: int
    train_tokens: token_cache.TokenChunks | np.ndarray | None = None
    num_tokens: Mapping[str, int] | None = None

    def train_iterator(
        self, batch_size: int, *, num_epochs: int | None = None
    ) -> grain.DatasetIterator:
        """A fresh training iterator with per-process batch size `batch_size` (infinite by default)."""
        c = self.data_config
        return pipeline.make_train_iterator(
            self.tokens["train"] if self.train_tokens is None else self.train_tokens,
            seq_len=self.seq_len,
            batch_size=batch_size,
            seed=c.seed,
            shuffle=c.shuffle,
            stride=c.train_stride,
            random_offset=c.random_offset,
            num_epochs=num_epochs,
            process_index=self.process_index,
            process_count=self.process_count,
        )

    def eval_tokens(self, split: str = "validation") -> np.ndarray:
        """The plain token stream of a split ('train', 'validation' or 'test'), int32[N]."""
        if split not in self.tokens:
            raise DataError(f"Unknown split {split!r}; use one of {sorted(self.tokens)}.")
        return self.tokens[split]

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


def build_datasets(
    data_config: Any,
    seq_len: int,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Datasets:
    """Loads the corpus, builds the tokenizer, tokenizes every split and checks the train length.

    Args:
      data_config: `config.data` (a DataConfig, a ConfigDict or mapping of its fields, or None
        for the defaults).
      seq_len: model context length T.
      process_index: this process' shard; default `jax.process_index()`.
      process_count: number of shards; default `jax.process_count()`.

    Returns:
      `Datasets`; call `.train_iterator(per_process_batch_size)` for training batches.

    Raises:
      DataError: bad corpus input, or a training split shorter than one window of seq_len + 1
        tokens; ConfigError: a bad data section.
    """
    config = DataConfig.from_any(data_config)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    shards = dict(process_index=process_index, process_count=process_count)
    if config.corpus.startswith(("tfds:", "tfds-catalog:")):
        from llp_jax.data import tfds_data  # noqa: PLC0415  (imports tensorflow_datasets)

        parts = tfds_data.build_tfds_parts(config, seq_len)
        return Datasets(seq_len=seq_len, data_config=config, **shards, **parts)
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
            f"training window of seq_len + 1 = {seq_len + 1}; use a larger corpus or a smaller "
            "seq_len."
        )
    return Datasets(
        tokenizer=tokenizer,
        corpus=corpus,
        tokens=tokens,
        words=corpus.words,
        num_bytes={s: len(t.encode("utf-8")) for s, t in corpus.splits.items()},
        seq_len=seq_len,
        data_config=config,
        **shards,
    )
