"""Tokenizers: raw bytes (no training, any text), SentencePiece (sentencepiece_tokenizer.py),
Hugging Face files (hf_tokenizer.py) and the authors' enwik8 numbering (txl_bytes.py), built by
name (`make_tokenizer`).

All map text to a flat `np.int32` token stream and back. Decoding never fails: invalid ids and
specials are dropped and invalid byte sequences become U+FFFD, because sampling from an untrained
model produces exactly such sequences.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from llp_jax.data import hf_tokenizer, txl_bytes
from llp_jax.data.corpus import DataError
from llp_jax.data.sentencepiece_tokenizer import (  # noqa: F401  (re-exported: the API)
    SentencePieceTokenizer,
    train_sentencepiece,
    utf8,
)
from llp_jax.data.tokenizer_specs import check_spec, in_folder


@runtime_checkable
class Tokenizer(Protocol):
    """What models, the pipeline and samplers need from a tokenizer."""

    name: str
    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int
    eod_id: int  # the end-of-document token, put after every document

    def encode(self, text: str) -> np.ndarray:
        """Text -> int32 token ids of shape [num_tokens]."""

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Token ids -> text; never raises on out-of-range ids or specials."""


BATCH_CHARS = 1 << 22  # text that `encode_texts` gives a tokenizer at once: ~4 MB


def encode_texts(tokenizer: Tokenizer, texts: Iterable[str]) -> Iterator[np.ndarray]:
    """Each text's ids, in order, the texts given to the tokenizer's `encode_batch` (where it has
    one) about BATCH_CHARS at a time: one SentencePiece call per paragraph spent most of its time
    starting (125,000 paragraphs of JSON Lines: 22.8 s, against 4.0 s for all their lines in one
    call)."""
    encode_batch = getattr(tokenizer, "encode_batch", None)
    if encode_batch is None:
        yield from map(tokenizer.encode, texts)
        return
    batch: list[str] = []
    size = 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= BATCH_CHARS:
            yield from encode_batch(batch)
            batch, size = [], 0
    if batch:
        yield from encode_batch(batch)


class ByteTokenizer:
    """UTF-8 bytes as tokens: ids 0..255 are bytes, then PAD=256, BOS=257, EOS=258 (vocab 259).

    No training, no unknown tokens, and the same tokenizer for every corpus, so byte-level results
    are comparable across corpora (the tokenizer the Perceiver AR paper used for PG-19 bytes).
    """

    name = "byte"
    vocab_size = 259
    pad_id = 256
    bos_id = 257
    eos_id = 258
    eod_id = 258  # end of document: the EOS id
    newline_id = 10  # decode splits at it exactly: no UTF-8 sequence holds the byte 0x0a

    def encode(self, text: str) -> np.ndarray:
        """Encodes text as its UTF-8 bytes, shape [num_bytes], int32."""
        return self.encode_bytes(utf8(text))

    def encode_bytes(self, raw: bytes) -> np.ndarray:
        """The bytes themselves (no decode/encode round trip: a stream cut inside a character,
        enwik8's splits, is read exactly), shape [num_bytes], int32."""
        return np.frombuffer(raw, dtype=np.uint8).astype(np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Decodes byte ids, dropping specials / out-of-range ids; bad UTF-8 becomes U+FFFD."""
        ids_N = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids_N = ids_N[(ids_N >= 0) & (ids_N < 256)]
        return ids_N.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def document_end(tokenizer: Tokenizer) -> int:
    """The id ending each document (data.document_boundaries='eod'). A SentencePiece model
    trained elsewhere with eos_id=-1 has none: a one-line DataError, not -1 in the stream."""
    if tokenizer.eod_id < 0 and isinstance(tokenizer, txl_bytes.TxlByteTokenizer):
        raise DataError(f"{txl_bytes.KIND} (Transformer-XL's byte ids) has no end-of-document "
                        "token: their text is one stream; set "
                        "--config.data.document_boundaries=none")  # fmt: skip
    if tokenizer.eod_id < 0:
        raise DataError(
            f"tokenizer {tokenizer.name} has no end-of-sequence piece of its own to end each "
            "document with (data.document_boundaries='eod'; a BERT [SEP] ends every line); set "
            "--config.data.document_boundaries=none (documents joined by a newline) or give a "
            "tokenizer with an end-of-sequence token"
        )
    return tokenizer.eod_id


def make_tokenizer(
    kind: str = "byte",
    *,
    vocab_size: int = 2048,
    train_text: str | None = None,
    cache_dir: str = "",
    model_type: str = "unigram",
    split_texts: Sequence[str] | None = None,
) -> Tokenizer:
    """Builds a tokenizer by name.

    Args:
      kind: 'byte', 'sentencepiece' (trained on `train_text`, cached), 'txl_bytes'
        (Transformer-XL's enwik8 numbering, counted over `split_texts`), a path to a .model
        file, or a Hugging Face tokenizer.json (`hf_tokenizer`), or the folder holding either.
      vocab_size: SentencePiece vocabulary size (ignored for bytes).
      train_text: training split text; required for 'sentencepiece'.
      split_texts: every split's text, train first; required for 'txl_bytes'.
      cache_dir: SentencePiece cache root (default ~/.cache/llp_jax).
      model_type: SentencePiece 'unigram' or 'bpe'.

    Returns:
      A `Tokenizer`.
    """
    if kind == "byte":
        return ByteTokenizer()
    check_spec(kind)
    if os.path.isdir(os.path.expanduser(kind)):
        kind = in_folder(kind)
    if kind.endswith(".model"):
        return SentencePieceTokenizer.from_file(kind)
    if kind.endswith(txl_bytes.TxlByteTokenizer.suffix):  # a txl_bytes run's numbering
        return txl_bytes.TxlByteTokenizer.from_file(kind)
    if hf_tokenizer.is_spec(kind):
        return hf_tokenizer.HFTokenizer.from_file(kind)
    if kind == txl_bytes.KIND:
        if split_texts is None:
            raise DataError(f"make_tokenizer({kind!r}) needs split_texts to count the bytes of.")
        return txl_bytes.TxlByteTokenizer.count(split_texts)
    if kind == "sentencepiece":
        if train_text is None:
            raise DataError("make_tokenizer('sentencepiece') needs train_text to train on.")
        return train_sentencepiece(
            train_text, vocab_size=vocab_size, model_type=model_type, cache_dir=cache_dir
        )
    raise DataError(f"Unknown tokenizer {kind!r}; use 'byte', 'sentencepiece', 'txl_bytes', a "
                    ".model path or a tokenizer.json.")  # fmt: skip
