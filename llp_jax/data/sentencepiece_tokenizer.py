"""SentencePiece as a `Tokenizer`: a model read from a file or trained on the train split
(`sentencepiece_trainer` holds the training itself), cached on disk by its text and settings.

It encodes text line by line with '\\n' as its own token, and never raises on text: lone
surrogates (not encodable as UTF-8) become '?' first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import sentencepiece as spm

from llp_jax import caches, paths
from llp_jax.data import hf_tokenizer, sentencepiece_trainer
from llp_jax.data.corpus import DataError
from llp_jax.data.sentencepiece_trainer import FIXED_PIECES, MIN_SP_VOCAB
from llp_jax.errors import first_line

_log = logging.getLogger(__name__)


def utf8(text: str) -> bytes:
    """`text`'s UTF-8 bytes, lone surrogates (not encodable) as '?': encoded once, not checked
    by one encoding and made by a second (a corpus' size in bytes, twice)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace")


def valid_utf8(text: str) -> str:
    """Replaces lone surrogates (not encodable as UTF-8) with '?' so encoders never raise."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


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
        texts = [valid_utf8(text) for text in texts]
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
    proto = sentencepiece_trainer.train_proto(valid_utf8(train_text), settings)
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
