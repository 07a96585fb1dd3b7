"""Pre-tokenised splits on disk: a split's token stream cut into fixed-length ArrayRecord records.

Why pre-tokenise instead of tokenising documents on the fly in a Grain map: the training windows
are cut from the concatenated stream at arbitrary offsets (shifted per epoch), which needs every
token's position up front; the evaluation protocols need the exact stream; and SentencePiece
encodes a few MB/s per core, so 16 windows per step from freshly tokenised PG-19 books (400 kB
each) would cost the host far more than the step. The one pass also yields each split's word,
byte and token counts. It runs once per dataset and tokenizer and stores ~2 bytes per token
(uint16 when the vocabulary fits).

Layout of a split `s` in a token folder: `s.array_record` (record k = tokens
[k * chunk_tokens, (k + 1) * chunk_tokens) as little-endian uint16/int32 bytes) and `s.json`
(counts and format), written last, so a folder with the json is complete. A window of T + 1
tokens touches at most two records.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable

import numpy as np
from array_record.python import array_record_data_source, array_record_module

from llp_jax import paths
from llp_jax.data import tokenizers
from llp_jax.data.corpus import count_words
from llp_jax.errors import STORAGE_ERRNOS

FORMAT_VERSION = 1


def _as_os_error(error: RuntimeError, path: str) -> BaseException:
    """array_record reports a failed write as RuntimeError('write() failed: No space left on
    device; writing <file>; ...'): the OSError it stands for, naming the split's file (a
    launcher then prints one line), or the error itself."""
    for code in STORAGE_ERRNOS:
        if os.strerror(code) in str(error):
            return OSError(code, os.strerror(code), path)
    return error


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<i4")


def write_split(
    folder: str,
    split: str,
    token_arrays: Iterable[np.ndarray],
    *,
    vocab_size: int,
    chunk_tokens: int,
    counts: dict,
) -> dict:
    """Writes a token stream (given as consecutive pieces) as fixed-length chunks.

    Args:
      folder: the token folder (created if needed).
      split: split name; files `<split>.array_record` and `<split>.json`.
      token_arrays: the stream in pieces of any length (e.g. one per document), int.
      vocab_size: decides the stored dtype (uint16 up to 65536 ids).
      chunk_tokens: tokens per record.
      counts: extra metadata (words, bytes, documents, ...) filled in by the caller while
        `token_arrays` is consumed; written to the json after the last record.

    Returns:
      The split's metadata, as written to `<split>.json`.
    """
    os.makedirs(folder, exist_ok=True)
    dtype = _dtype_for(vocab_size)
    path = os.path.join(folder, f"{split}.array_record")
    tmp = f"{path}.tmp{os.getpid()}"
    pending: list[np.ndarray] = []
    num_pending = num_tokens = num_chunks = 0
    try:
        writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
        try:
            for piece in token_arrays:
                pending.append(np.asarray(piece).astype(dtype, copy=False))
                num_pending += len(pending[-1])
                if num_pending >= chunk_tokens:
                    flat = np.concatenate(pending)
                    full = len(flat) // chunk_tokens * chunk_tokens
                    for start in range(0, full, chunk_tokens):
                        writer.write(flat[start : start + chunk_tokens].tobytes())
                    num_chunks += full // chunk_tokens
                    num_tokens += full
                    pending, num_pending = [flat[full:]], len(flat) - full
            if num_pending:
                writer.write(np.concatenate(pending).tobytes())
                num_chunks += 1
                num_tokens += num_pending
        finally:
            writer.close()
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)  # a failed write (a full disk) leaves no partial file behind
        if isinstance(e, RuntimeError):
            raise _as_os_error(e, path) from None
        raise
    meta = dict(
        counts,
        num_tokens=num_tokens,
        num_chunks=num_chunks,
        chunk_tokens=chunk_tokens,
        dtype=dtype.str,
        format_version=FORMAT_VERSION,
    )
    paths.write_text(os.path.join(folder, f"{split}.json"), json.dumps(meta, indent=1))
    return meta


def tokenize_documents(
    folder: str,
    split: str,
    documents: Iterable[bytes],
    tokenizer: tokenizers.Tokenizer,
    *,
    separator: str,
    chunk_tokens: int,
    eod_id: int | None = None,
) -> dict:
    """Tokenises a split's documents (UTF-8 bytes, in order) into `folder` (see `write_split`).

    Each document is followed by `separator` in the stream (for counting and byte tokens), and
    by the token `eod_id` when given (the end-of-document token). Byte-level tokenizers get the
    bytes themselves (no decode/encode round trip, so enwik8 chunks cut inside a character are
    exact).

    Also counts words (whitespace-separated, as in the stream: a word cut between two documents
    with no separator, e.g. two enwik8 chunks, counts once), lines, UTF-8 bytes and documents.
    """
    counts = {"words": 0, "lines": 0, "bytes": 0, "documents": 0, "tokenizer": tokenizer.name}
    sep = separator.encode("utf-8")
    encode_bytes = getattr(tokenizer, "encode_bytes", None)  # bytes and txl_bytes: by byte

    def texts():
        """(UTF-8 bytes, text) of each document with its separator, counted as it is read."""
        ends_in_word = False
        for raw in documents:
            raw += sep
            text = raw.decode("utf-8", errors="replace")
            words = count_words(text)
            if ends_in_word and text[:1] and not text[:1].isspace():
                words -= 1  # The previous document's last word continues here.
            ends_in_word = not text[-1].isspace() if text else ends_in_word
            counts["words"] += words
            counts["lines"] += text.count("\n")
            counts["bytes"] += len(raw)
            counts["documents"] += 1
            yield raw, text

    def pieces():
        encoded = (
            (encode_bytes(raw) for raw, _ in texts())
            if encode_bytes is not None
            else tokenizers.encode_texts(tokenizer, (text for _, text in texts()))
        )
        for ids in encoded:
            yield ids
            if eod_id is not None:
                yield np.asarray([eod_id], np.int32)

    return write_split(
        folder,
        split,
        pieces(),
        vocab_size=tokenizer.vocab_size,
        chunk_tokens=chunk_tokens,
        counts=counts,
    )


def read_meta(folder: str, split: str) -> dict | None:
    """The split's metadata, or None when it has not been (completely) written."""
    path = os.path.join(folder, f"{split}.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        meta = json.load(f)
    return meta if meta.get("format_version") == FORMAT_VERSION else None


class TokenChunks:
    """A split's token stream on disk, sliceable like an int32 array: `chunks[a:b]`.

    The pipeline's window sampler only needs `len()` and slices, so a stream far larger than
    memory trains exactly like an in-memory one. Recently read records are kept (a window often
    shares a record with the next one in evaluation order). Picklable: the file opens lazily.
    """

    _CACHED_CHUNKS = 4

    def __init__(self, folder: str, split: str, meta: dict | None = None):
        self.folder, self.split = folder, split
        self.meta = meta or read_meta(folder, split)
        if self.meta is None:
            raise FileNotFoundError(f"No complete token split {split!r} in {folder}.")
        self.chunk_tokens = int(self.meta["chunk_tokens"])
        self.dtype = np.dtype(self.meta["dtype"])
        self._source = None
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()

    def __getstate__(self):
        return {**self.__dict__, "_source": None, "_cache": collections.OrderedDict()}

    def __len__(self) -> int:
        return int(self.meta["num_tokens"])

    def _chunks(self, ks: list[int]) -> list[np.ndarray]:
        if self._source is None:
            path = os.path.join(self.folder, f"{self.split}.array_record")
            self._source = array_record_data_source.ArrayRecordDataSource([path])
        missing = [k for k in ks if k not in self._cache]
        if missing:
            records = self._source.__getitems__(missing)  # One batched read.
            for k, record in zip(missing, records):
                self._cache[k] = np.frombuffer(record, dtype=self.dtype)
        out = [self._cache[k] for k in ks]
        for k in ks:
            self._cache.move_to_end(k)
        while len(self._cache) > self._CACHED_CHUNKS:
            self._cache.popitem(last=False)
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) as int32[stop - start] (clipped to the stream like a slice)."""
        start, stop = max(0, start), min(len(self), stop)
        if stop <= start:
            return np.zeros((0,), np.int32)
        first, last = start // self.chunk_tokens, (stop - 1) // self.chunk_tokens
        parts = self._chunks(list(range(first, last + 1)))
        flat = parts[0] if len(parts) == 1 else np.concatenate(parts)  # Most windows: one record.
        offset = first * self.chunk_tokens
        return flat[start - offset : stop - offset].astype(np.int32)

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("TokenChunks supports contiguous slices only, e.g. chunks[a:b].")
        start, stop, _ = key.indices(len(self))
        return self.read(start, stop)
