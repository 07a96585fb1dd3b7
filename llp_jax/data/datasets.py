"""What the trainer and the evaluators get from the data layer: `build_datasets(config.data, n)`
loads the corpus, builds the tokenizer, tokenises every split and hands back a `Datasets`.

Embedded and text-file corpora are tokenised in memory; 'tfds:' / 'tfds-catalog:' corpora are
prepared and tokenised once on disk and read from there (tfds_data.py, imported only for them:
it loads tensorflow_datasets).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np

from llp_jax.data import bible, pipeline, token_cache, tokenizers, user_text
from llp_jax.data import corpus as corpus_lib
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
      num_chars: split -> characters, where the text itself is not kept (None: count them).
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
    num_chars: Mapping[str, int | None] | None = None

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

    def opening_words(self, num_words: int = 8) -> str:
        """The first words of the validation text (of the first split held): a prompt in the
        corpus' own language and style when none is given."""
        split = next(s for s in ("validation", "test", "text", "train") if s in self.tokens)
        ids = np.asarray(self.tokens[split][: 32 * num_words])
        eod = self.tokenizer.eod_id
        if eod >= 0 and self.data_config.document_boundaries == "eod":  # its first document's
            ids = ids[np.argmax(ids != eod) :]  # (leading ends of documents skipped)
            ends = np.flatnonzero(ids == eod)
            ids = ids[: ends[0]] if ends.size else ids
        text = self.tokenizer.decode(ids)
        return " ".join(text.split()[:num_words]) or text[:32]

    def summary(self) -> str:
        """One line per split: tokens, words, bytes; for run logs."""
        c, got = self.data_config, self.tokenizer.vocab_size
        trained_here = self.tokenizer.name.startswith(f"sp_{c.sp_model_type}{c.vocab_size}_")
        fewer = (f" (of the {c.vocab_size:,} asked: this text holds no more pieces)"
                 if trained_here and got < c.vocab_size else "")  # fmt: skip
        head = (
            f"corpus {self.corpus.name} ({self.corpus.description}); "
            f"tokenizer {self.tokenizer.name} vocab {got:,}{fewer}"
        )
        num_tokens = self.num_tokens or {s: len(self.tokens[s]) for s in self.tokens}
        rows = [
            f"  {s}: {num_tokens[s]:,} tokens, {self.words[s]:,} words, {self.num_bytes[s]:,} bytes"
            for s in num_tokens
        ]
        return "\n".join([head, *rows])


def load_corpus(spec: str = "austen", *, text_field: str = "text") -> corpus_lib.Corpus:
    """An embedded corpus ('austen', 'web_bible') or the user's text (`user_text`)."""
    if spec.strip().lower() in ("austen", ""):
        return corpus_lib.load_austen()
    if spec.strip().lower() == "web_bible":
        return bible.load_web_bible()
    return user_text.load_text_corpus(spec, text_field=text_field)


def encode_documents(tokenizer, documents, boundaries: str = "eod") -> np.ndarray:
    """One token stream of `documents`: each followed by the end-of-document token ('eod'), or
    joined by newlines ('none')."""
    if boundaries == "none":
        return tokenizer.encode("\n".join(documents))
    eod_id = tokenizers.document_end(tokenizer)
    # Each document's ids are written into the stream as they come and let go (byte tokens
    # straight from the text's UTF-8 bytes): collecting them for np.concatenate held the ids
    # twice, and a byte-level document's int32 copy a third time (an 800 MB corpus peaked at
    # 8.8 GB). The stream is sized by the documents' UTF-8 bytes, the byte tokens' count and far
    # above subword ones; only the pages written are taken from the OS, and it grows where a
    # tokenizer exceeds it.
    documents = documents if isinstance(documents, Sequence) else list(documents)
    size = lambda d: len(d) if d.isascii() else len(tokenizers.utf8(d))  # noqa: E731
    stream = np.empty(sum(size(d) + 1 for d in documents), np.int32)
    if isinstance(tokenizer, tokenizers.ByteTokenizer):
        parts = (np.frombuffer(tokenizers.utf8(d), np.uint8) for d in documents)
    else:
        parts = tokenizers.encode_texts(tokenizer, documents)
    at = 0
    for ids in parts:
        if at + len(ids) + 1 > len(stream):
            grown = np.empty(max(2 * len(stream), at + len(ids) + 1), np.int32)
            grown[:at] = stream[:at]
            stream = grown
        stream[at : at + len(ids)] = ids
        stream[at + len(ids)] = eod_id
        at += len(ids) + 1
    return stream[:at].copy() if 2 * at < len(stream) else stream[:at]


def build_datasets(
    data_config: Any,
    seq_len: int,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    tokenizer: tokenizers.Tokenizer | None = None,
) -> Datasets:
    """Loads the corpus, builds the tokenizer, tokenizes every split and checks the train length.

    Args:
      data_config: `config.data` (a DataConfig, a ConfigDict or mapping of its fields, or None
        for the defaults).
      seq_len: model context length T.
      process_index: this process' shard; default `jax.process_index()`.
      process_count: number of shards; default `jax.process_count()`.
      tokenizer: use this tokenizer (e.g. a workdir's own) instead of building one; text
        corpora only (a tfds corpus keeps its tokenizer with its prepared tokens).

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
    if config.is_tfds:
        from llp_jax.data import tfds_data  # noqa: PLC0415  (imports tensorflow_datasets)

        parts = tfds_data.build_tfds_parts(config, seq_len)
        return Datasets(seq_len=seq_len, data_config=config, **shards, **parts)
    corpus = load_corpus(config.corpus, text_field=config.text_field or "text")
    tokenizer = tokenizer or tokenizers.make_tokenizer(
        config.tokenizer,
        vocab_size=config.vocab_size,
        train_text=corpus.splits["train"],
        cache_dir=config.cache_dir,
        model_type=config.sp_model_type,
        split_texts=[corpus.splits[s] for s in corpus_lib.SPLITS if s in corpus.splits],
    )
    tokens = {
        s: encode_documents(tokenizer, corpus.split_documents(s), config.document_boundaries)
        for s in corpus.splits
    }
    if len(tokens["train"]) < seq_len + 1:
        raise DataError(
            f"Corpus {config.corpus!r} has {len(tokens['train'])} training tokens, fewer than one "
            f"training window of seq_len + 1 = {seq_len + 1}; use a larger corpus or a smaller "
            "seq_len."
        )
    counts = dict(words=corpus.words, num_chars={s: len(t) for s, t in corpus.splits.items()},
                  num_bytes={s: len(t.encode("utf-8")) for s, t in corpus.splits.items()})  # fmt: skip
    return Datasets(
        tokenizer=tokenizer,
        corpus=_without_training_text(corpus),
        tokens=tokens,
        seq_len=seq_len,
        data_config=config,
        **counts,
        **shards,
    )


def _without_training_text(corpus: corpus_lib.Corpus) -> corpus_lib.Corpus:
    """`corpus` less its training text: training reads the tokens, and the text (held twice:
    its documents and their join) was a corpus's size again for the whole run. Its counts stay
    in the Datasets; `--split=train` reads it again (evaluation/eval_data.py)."""
    keep = lambda parts: {s: v for s, v in parts.items() if s != "train"}  # noqa: E731
    documents = None if corpus.documents is None else keep(corpus.documents)
    return dataclasses.replace(corpus, splits=keep(corpus.splits), documents=documents)


def text_datasets(
    spec: str,
    tokenizer: tokenizers.Tokenizer,
    seq_len: int,
    text_field: str = "text",
    boundaries: str = "eod",
) -> Datasets:
    """Any text (files, folders, globs, JSON Lines, Parquet, CSV: a corpus spec; or '-', standard
    input, or a pipe: read once) as one evaluation split 'text', tokenised with a given
    tokenizer (a trained model's own), documents ended by its end-of-document token or joined
    by newlines (`boundaries`, as the model was trained: 'eod' or 'none'); `text_field`: the
    field (JSON) or column (Parquet, CSV, TSV) holding the text."""
    docs, _ = user_text.read_spec_documents(spec, text_field, once=True)  # '-', pipes too
    if not docs:
        raise DataError(f"{spec!r} holds no text to evaluate")
    name = "stdin" if spec == user_text.STDIN else os.path.basename(os.path.normpath(spec))
    corpus = corpus_lib.Corpus.from_documents(name, {"text": docs}, f"{len(docs)} document(s)")
    return corpus_datasets(corpus, tokenizer, seq_len, splits=("text",), spec=spec,
                           boundaries=boundaries)  # fmt: skip


def corpus_datasets(corpus, tokenizer, seq_len: int, *, splits=("validation",), spec=None,
                    boundaries: str = "eod"):  # fmt: skip
    """Evaluation splits of a `Corpus` tokenised with a given tokenizer (a trained model's own),
    documents ended by its end-of-document token (or joined by newlines: `boundaries='none'`):
    another domain for a trained model."""
    split_text = {s: corpus.splits[s] for s in splits}
    return Datasets(
        tokenizer=tokenizer,
        corpus=corpus,
        tokens={
            s: encode_documents(tokenizer, corpus.split_documents(s), boundaries) for s in splits
        },
        words={s: corpus_lib.count_words(t) for s, t in split_text.items()},
        num_bytes={s: len(t.encode("utf-8")) for s, t in split_text.items()},
        seq_len=seq_len,
        data_config=DataConfig(corpus=spec or corpus.name, document_boundaries=boundaries),
        process_index=0,
        process_count=1,
    )
