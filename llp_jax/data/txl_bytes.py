"""Transformer-XL's enwik8 vocabulary: the token ids of the authors' character-level checkpoints.

The authors' code reads enwik8 through Transformer-XL's `data_utils.Corpus`
(`Utils.get_loaders_enwiki8_basedon_transformerXL`), so their default checkpoints
(`NUM_UNIQUE_TOKENS = 204`) do not use byte values as ids:
  * Transformer-XL's prep script writes each byte as its decimal value and each newline byte as
    a line break; the corpus reads lines without an end-of-line symbol (`add_eos=False`), so the
    newline byte is in neither the vocabulary nor the token stream.
  * `Vocab` counts the symbols of train, valid and test, in that order, and numbers them by
    count, most frequent first, ties in the order they were first seen (`Counter.most_common`
    sorts stably over insertion order). On enwik8 that is 204 ids, with no special tokens.

`data.tokenizer='txl_bytes'` rebuilds that numbering from a corpus' bytes (every split, as they
count them), so an imported enwik8 checkpoint is evaluated and sampled on the very ids it was
trained on. The numbering is written to the workdir as a small JSON file, the run's tokenizer.
Decoding gives the bytes back except the newlines the stream never had.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import numpy as np

from llp_jax import paths
from llp_jax.data.corpus import DataError
from llp_jax.errors import first_line

KIND = "txl_bytes"  # the data.tokenizer value
FORMAT = "llp_jax.txl_bytes.v1"
NEWLINE = 0x0A  # a line break in their text files: never a token


class TxlByteTokenizer:
    """Byte values as Transformer-XL numbers them: by count over the corpus, newlines dropped.

    `encode` and `encode_bytes` map each byte to its id and drop newline bytes; a byte the
    vocabulary lacks (one the counted corpus never held) is a DataError naming it, since the
    model has no id for it (their vocabulary has no unknown token). No BOS, EOS or PAD (-1).
    """

    file_name = "tokenizer.txl_bytes.json"  # in a workdir's data folder
    suffix = ".txl_bytes.json"  # a data.tokenizer file read as this numbering
    bos_id = eos_id = pad_id = eod_id = -1
    newline_id = None

    def __init__(self, symbols: Sequence[int] | bytes, *, source: str = "the vocabulary"):
        """`symbols`: the byte value of each id, in id order."""
        values = [int(v) for v in symbols]
        bad = [v for v in values if not 0 <= v < 256 or v == NEWLINE]
        if not values or bad or len(set(values)) != len(values):
            why = "is empty" if not values else (
                f"holds {bad[0]}, not a byte value other than the newline's 10" if bad
                else "holds a byte value twice")  # fmt: skip
            raise DataError(f"{source} {why}; count it again from the corpus (data.tokenizer="
                            f"'{KIND}')")  # fmt: skip
        self.symbols = bytes(values)
        self.vocab_size = len(values)
        self._ids = np.full(256, -1, np.int32)
        self._ids[np.frombuffer(self.symbols, np.uint8)] = np.arange(len(values), dtype=np.int32)
        digest = hashlib.sha256(self.symbols).hexdigest()[:12]
        self.name = f"{KIND}:{len(values)}_{digest}"
        self.file_bytes = json.dumps({"format": FORMAT, "symbols": values}).encode()

    @classmethod
    def count(cls, parts: Iterable[bytes | str]) -> TxlByteTokenizer:
        """Transformer-XL's numbering of the bytes of `parts` (train, validation, test, in that
        order, as `Corpus` counts them): by count, descending, ties by first occurrence."""
        counts = np.zeros(256, np.int64)
        first = np.full(256, np.iinfo(np.int64).max, np.int64)
        offset = 0
        for part in parts:
            raw = part.encode("utf-8", errors="replace") if isinstance(part, str) else part
            bytes_N = np.frombuffer(raw, np.uint8)
            counts += np.bincount(bytes_N, minlength=256)
            values, where = np.unique(bytes_N, return_index=True)
            first[values] = np.minimum(first[values], where + offset)
            offset += len(bytes_N)
        counts[NEWLINE] = 0
        present = np.flatnonzero(counts)
        if not len(present):
            raise DataError(f"data.tokenizer='{KIND}' counts the corpus' bytes, and it has none "
                            "but newlines; give a corpus with text")  # fmt: skip
        order = np.lexsort((first[present], -counts[present]))  # last key sorts first
        return cls(present[order].tolist(), source=f"the '{KIND}' vocabulary")

    @classmethod
    def from_json(cls, data: bytes, *, source: str, fix: str = "") -> TxlByteTokenizer:
        """Reads `file_bytes` back (a workdir's tokenizer file)."""
        try:
            record = json.loads(data)
            if record.get("format") != FORMAT:
                raise ValueError(f"format {record.get('format')!r}, not {FORMAT!r}")
            symbols = record["symbols"]
            if not isinstance(symbols, list) or not all(isinstance(s, int) for s in symbols):
                raise ValueError("'symbols' is not a list of byte values")
        except (ValueError, UnicodeDecodeError, AttributeError, KeyError) as e:
            why = first_line(e) or type(e).__name__
            raise DataError(f"{source} is damaged ({why}); {fix or 'count it again'}") from None
        return cls(symbols, source=source)

    @classmethod
    def from_file(cls, path: str) -> TxlByteTokenizer:
        """A run's numbering file (`<workdir>/data/tokenizer.txl_bytes.json`), given as
        data.tokenizer to read other text with the same ids; a path or a URL."""
        try:
            data = paths.resolve(path).read_bytes()
        except (OSError, ValueError) as e:
            why = first_line(e) or type(e).__name__
            raise DataError(f"data.tokenizer={path!r} cannot be read ({why})") from None
        return cls.from_json(data, source=path, fix="give the file of a run trained with it")

    def encode(self, text: str) -> np.ndarray:
        """Text -> ids of its UTF-8 bytes (newlines dropped), shape [num_tokens], int32."""
        try:
            return self.encode_bytes(text.encode("utf-8", errors="replace"))
        except DataError:  # named by the characters the user typed, not their bytes
            unknown = list(dict.fromkeys(c for c in text if not self._holds(c)))
            unknown = [f"{c!r} (U+{ord(c):04X})" for c in unknown if c != "\n"]
            raise self._not_held(unknown, "characters") from None

    def encode_bytes(self, raw: bytes) -> np.ndarray:
        """Bytes -> ids, newlines dropped: what their corpus holds for these bytes. Bytes, not
        text, so a stream cut inside a character (enwik8's splits) is read exactly."""
        bytes_N = np.frombuffer(raw, np.uint8)
        ids_N = self._ids[bytes_N[bytes_N != NEWLINE]]
        if (ids_N < 0).any():
            missing = np.unique(bytes_N[self._ids[bytes_N] < 0])
            raise self._not_held([f"0x{int(b):02x}" for b in missing[missing != NEWLINE]], "bytes")
        return ids_N

    def _holds(self, char: str) -> bool:
        """Every byte of `char` has an id."""
        return bool((self._ids[np.frombuffer(char.encode(errors="replace"), np.uint8)] >= 0).all())

    def _not_held(self, what: list[str], kind: str) -> DataError:
        """The error for characters or bytes the vocabulary has no id for (the first five)."""
        more = f" and {len(what) - 5} more" if len(what) > 5 else ""
        return DataError(
            f"{kind} {', '.join(what[:5])}{more} are not in the {self.vocab_size}-byte '{KIND}' "
            "vocabulary (the counted corpus never held them, so the model has no id for them); "
            "remove them from the text"
        )

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Ids -> text; ids out of range are dropped, bad UTF-8 becomes U+FFFD."""
        ids_N = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids_N = ids_N[(ids_N >= 0) & (ids_N < self.vocab_size)]
        bytes_N = np.frombuffer(self.symbols, np.uint8)[ids_N]
        return bytes_N.tobytes().decode("utf-8", errors="replace")
