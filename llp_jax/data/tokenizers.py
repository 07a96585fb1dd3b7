"""Tokenizers: raw bytes (no training, any text) and SentencePiece trained on the train split.

Both map text to a flat `np.int32` token stream and back. Decoding never fails: invalid ids and
specials are dropped and invalid byte sequences become U+FFFD, because sampling from an untrained
model produces exactly such sequences.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import sentencepiece as spm

from llp_jax import caches, paths
from llp_jax.data import hf_tokenizer, sentencepiece_trainer, txl_bytes
from llp_jax.data.corpus import DataError
from llp_jax.data.sentencepiece_trainer import FIXED_PIECES, MIN_SP_VOCAB
from llp_jax.data.tokenizer_specs import check_spec, in_folder
from llp_jax.errors import first_line

_log = logging.getLogger(__name__)


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


def utf8(text: str) -> bytes:
    """`text`'s UTF-8 bytes, lone surrogates (not encodable) as '?': encoded once, not checked
    by one encoding and made by a second (a corpus' size in bytes, twice)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace")


def _valid_utf8(text: str) -> str:
    """Replaces lone surrogates (not encodable as UTF-8) with '?' so encoders never raise."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


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


class SentencePieceTokenizer:
    """A SentencePiece model encoding text line by line, with '\\n' as its own token.

    Encoding per line (instead of the whole text as one sentence) gives every line the usual leading
    word-boundary piece and is ~6x faster for BPE on long texts. The model is trained with identity
    normalisation, no whitespace folding and byte fallback, so decode(encode(text)) == text for any
    text except U+2581 ('▁', SentencePiece's own space marker, which comes back as a space).
    """

    file_name = "tokenizer.model"  # in a workdir's data folder

    def __init__(self, model_proto: bytes, name: str = "sentencepiece", *, source: str = "",
                 fix: str = "replace it with an intact copy"):  # fmt: skip
        """Wraps a serialized model (the bytes of a .model file); `source` (the file) and `fix`
        word the one-line DataError for bytes that are no SentencePiece model."""
        try:
            if not model_proto:  # SentencePiece would load it as an uninitialised model
                raise ValueError("it is empty")
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except (RuntimeError, TypeError, ValueError) as e:
            why = first_line(e).removeprefix("INTERNAL: ")
            why = "it does not parse" if "ParseFromArray" in why or not why else why
            raise DataError(f"{source or 'the SentencePiece model'} is damaged or not a "
                            f"SentencePiece model ({why}); {fix}") from None  # fmt: skip
        self.model_proto = self.file_bytes = model_proto  # file_bytes: as every file tokenizer
        self.name = name
        self.vocab_size = int(self._sp.get_piece_size())
        self.bos_id, self.eos_id, self.pad_id = (
            self._sp.bos_id(),
            self._sp.eos_id(),
            self._sp.pad_id(),
        )
        self.eod_id = self.eos_id  # end of document
        # Models from elsewhere may lack a '\n' piece: they then encode the text as one sentence
        # (SentencePiece's usual behaviour, normalisation included), without the line-by-line scheme.
        newline_id = self._sp.piece_to_id("\n")
        self.newline_id = None if newline_id == self._sp.unk_id() else newline_id

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> SentencePieceTokenizer:
        """Loads an existing .model file (a local path or a URL: gs://bucket/spm.model)."""
        try:
            proto = paths.resolve(path).read_bytes()
        except (OSError, ValueError) as e:
            why = first_line(e) or type(e).__name__
            raise DataError(f"SentencePiece model {path} cannot be read ({why}).") from None
        name = f"sentencepiece:{os.path.basename(os.fspath(path))}"
        return cls(proto, name=name, source=f"SentencePiece model {path}")

    def encode(self, text: str) -> np.ndarray:
        """Encodes text, shape [num_tokens], int32; each '\\n' becomes `newline_id`."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """`encode` of each text: the lines of all of them in one call (SentencePiece's threads)."""
        texts = [_valid_utf8(text) for text in texts]
        threads = min(2, os.cpu_count() or 1)
        if self.newline_id is None:
            return [
                np.asarray(ids, np.int32) for ids in self._sp.encode(texts, num_threads=threads)
            ]
        encode_lines = lambda lines: self._sp.encode(lines, num_threads=threads)  # noqa: E731
        return hf_tokenizer.encode_by_line(texts, encode_lines, self.newline_id)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Decodes ids; out-of-range ids are dropped, BOS/EOS/PAD decode to nothing, UNK to ' ⁇ '."""
        ids_N = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids_N = ids_N[(ids_N >= 0) & (ids_N < self.vocab_size)]
        if self.newline_id is None:
            return self._sp.decode(ids_N.tolist())
        lines = np.split(ids_N, np.flatnonzero(ids_N == self.newline_id))
        # np.split keeps the newline id at the head of every segment after the first.
        return "\n".join(
            self._sp.decode(seg[1 if i else 0 :].tolist()) for i, seg in enumerate(lines)
        )


def _cache_key(train_text: str, settings: dict) -> str:
    """Hash of the training text and settings: a changed corpus or vocab retrains."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update(utf8(train_text))
    return h.hexdigest()[:16]


def train_sentencepiece(
    train_text: str, *, vocab_size: int, model_type: str = "unigram", cache_dir: str = ""
) -> SentencePieceTokenizer:
    """Returns a SentencePiece tokenizer for `train_text`, trained once and cached on disk.

    Args:
      train_text: the training split (never validation/test: the vocab would leak them).
      vocab_size: target vocabulary size including 4 specials, '\\n' and 256 byte pieces; a small
        text may give fewer.
      model_type: 'unigram' or 'bpe'.
      cache_dir: cache root (default: `llp_jax.caches`, ~/.cache/llp_jax); models live in
        `<cache_dir>/sentencepiece/`. A cache that cannot be written is skipped with a warning.

    Returns:
      The tokenizer; prints the training time when it had to train.
    """
    if model_type not in ("unigram", "bpe"):
        raise DataError(f"sp_model_type must be 'unigram' or 'bpe', got {model_type!r}.")
    if vocab_size < MIN_SP_VOCAB:
        raise DataError(
            f"SentencePiece vocab_size={vocab_size} is too small: the minimum is {MIN_SP_VOCAB} "
            f"({FIXED_PIECES} byte and special pieces, and a few of the text's own)"
        )
    settings = {"model_type": model_type, "vocab_size": int(vocab_size), "version": 2}
    cache_root = caches.folder(
        "sentencepiece", os.path.join(cache_dir, "sentencepiece") if cache_dir else ""
    )
    name = f"sp_{model_type}{vocab_size}_{_cache_key(train_text, settings)}"
    path = os.path.join(cache_root, name + ".model") if cache_root else None
    if path and os.path.exists(path):
        _log.info("Loading cached SentencePiece model %s", path)
        with open(path, "rb") as f:
            cached = f.read()
        try:
            fix = "a cache, trained again on the same text and replaced"
            return SentencePieceTokenizer(cached, name=name, source=path, fix=fix)
        except DataError as e:
            print(f"[llp_jax.data] {e}")
    start = time.perf_counter()
    proto = sentencepiece_trainer.train_proto(_valid_utf8(train_text), settings)
    seconds = time.perf_counter() - start
    tokenizer = SentencePieceTokenizer(proto, name=name)
    got = tokenizer.vocab_size
    size = f"vocab {got:,}" + (
        f" (of the {vocab_size:,} asked: this text holds no more pieces)"
        if got < vocab_size
        else ""
    )
    print(
        f"[llp_jax.data] trained SentencePiece {model_type} {size} on {len(train_text):,} chars "
        f"in {seconds:.2f} s" + (f" -> {path}" if path else " (not cached)")
    )
    if path:
        # Atomic (concurrent processes never read a half-written model). A failed write (a
        # full disk) leaves no temporary file and costs only the cache: the model is the run's.
        try:
            paths.write_bytes(path, proto)
        except OSError as e:
            _log.warning("could not cache the SentencePiece model at %s (%s)", path,
                         (e.strerror or str(e)).lower())  # fmt: skip
    return tokenizer


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
