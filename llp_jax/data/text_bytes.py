"""From a corpus file's bytes to its documents: decompression, encoding, JSON records, tables.

Real corpora rarely come as plain UTF-8 `.txt`: C4 ships JSON Lines as `.json.gz`, the Pile as
`.jsonl.zst`, dumps come as `.xz` or `.bz2`, a Windows editor saves "Unicode" text as UTF-16 with
a byte-order mark, and instruction sets are one JSON array of records. So a file is
decompressed by its first bytes (gzip, bzip2, xz, Zstandard; an extension is often missing or
wrong), decoded as UTF-8 (a few invalid bytes tolerated) or, after a UTF-16/32 byte-order mark,
as that, and split into documents by its name without the compression suffix: `.jsonl` /
`.ndjson` one object per line, `.json` an array of records or strings, one object, or JSON Lines;
`.csv` / `.tsv` (spreadsheet exports, Kaggle datasets) one row per document; anything else is
one document. Apache Parquet (how Hugging Face datasets ship their splits:
`train-00000-of-00002.parquet`), known by its magic bytes, is one document per row of the text
column. Every problem is a one-line `DataError` naming the file.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import logging
import lzma
import re

from llp_jax.data.corpus import DataError
from llp_jax.errors import first_line

# A file with more invalid UTF-8 bytes than this fraction is not text.
MAX_INVALID_FRACTION = 0.01
JSONL_SUFFIXES = (".jsonl", ".ndjson")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
FIELD_FIX = "set --config.data.text_field (experiments.evaluate --text: --text_field)"

_log = logging.getLogger(__name__)
_SURROGATE_RE = re.compile("[\udc80-\udcff]")
# Byte-order marks, longest first (UTF-32 LE's starts with UTF-16 LE's).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # fmt: skip


class NotText(DataError):
    """A file that is not text, or holds none (raised for named files; folder and glob walks
    skip them)."""


class NoTextField(DataError):
    """A records or table file (JSON, CSV, Parquet) whose first record, header or schema has no
    `text_field`: raised for named files; folder and glob walks skip it (a project folder's
    package.json or results.csv is not the corpus) unless no file of the walk has the field."""


def _zstd(raw: bytes) -> bytes:
    """Every frame of `raw`. Not `decompress()`: a frame written by a stream (the Pile's) has no
    content size in its header; not a stream reader either: it ends a truncated file silently."""
    import zstandard  # noqa: PLC0415  (only Zstandard files need it)

    parts, rest = [], raw
    while rest:
        frame = zstandard.ZstdDecompressor().decompressobj()
        parts.append(frame.decompress(rest))
        if not frame.eof:
            raise EOFError("the data ends inside a frame (a truncated file)")
        rest = frame.unused_data
    return b"".join(parts)


def _bzip2_magic(raw: bytes) -> bool:
    return raw[:3] == b"BZh" and raw[3:4] in b"123456789" and raw[4:10] == b"1AY&SY"


# (format, how to recognise it, how to decompress it)
_FORMATS = (
    ("gzip", lambda raw: raw[:2] == b"\x1f\x8b", gzip.decompress),
    ("bzip2", _bzip2_magic, bz2.decompress),
    ("xz", lambda raw: raw[:6] == b"\xfd7zXZ\x00", lzma.decompress),
    ("Zstandard", lambda raw: raw[:4] == b"\x28\xb5\x2f\xfd", _zstd),
)


def decompress(path: str, raw: bytes) -> bytes:
    """`raw`, or its content if it is gzip, bzip2, xz or Zstandard data."""
    for name, matches, expand in _FORMATS:
        if matches(raw):
            try:
                return expand(raw)
            except ImportError:
                raise DataError(f"Corpus file {path} is {name}-compressed, which needs the "
                                "zstandard package: pip install zstandard") from None  # fmt: skip
            except Exception as e:  # noqa: BLE001  OSError, EOFError, LZMAError, ZstdError, ...
                raise DataError(f"Corpus file {path} is a damaged {name} file ({first_line(e)}); "
                                "download it again or leave it out.") from None  # fmt: skip
    return raw


def decode(path: str, raw: bytes) -> str:
    """The text of a file's (decompressed) bytes; NotText for binary or non-UTF-8 data."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                return _newlines(raw.decode(codec))
            except UnicodeDecodeError as e:
                raise NotText(f"Corpus file {path} starts with a {codec.upper()} byte-order "
                              f"mark but is not {codec.upper()} ({e.reason}); convert it to "
                              "UTF-8.") from None  # fmt: skip
    if b"\x00" in raw:
        raise NotText(
            f"Corpus file {path} looks binary (contains NUL bytes); pass a plain UTF-8 text file."
        )
    # surrogateescape maps each undecodable byte to exactly one lone surrogate: they can be counted.
    text = raw.decode("utf-8", errors="surrogateescape")
    text, num_bad = _SURROGATE_RE.subn("\ufffd", text)
    if num_bad > MAX_INVALID_FRACTION * len(raw):
        raise NotText(
            f"Corpus file {path} is not UTF-8 text ({num_bad / len(raw):.0%} of its bytes are "
            "invalid UTF-8); convert it to UTF-8 or leave it out."
        )
    if num_bad:
        # A few stray Latin-1 bytes in a scraped book should not stop a run.
        _log.warning("%s: replaced %d invalid UTF-8 bytes with U+FFFD.", path, num_bad)
    return _newlines(text.removeprefix("\ufeff"))


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def documents(path: str, text: str, text_field: str = "text") -> list[str]:
    """The documents of a file's text, by its name without a compression suffix."""
    name = path
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith(JSONL_SUFFIXES):
        records = _json_lines(path, text)
    elif name.endswith(".json"):
        records = _json(path, text)
    elif name.endswith(tuple(TABLE_DELIMITERS)):
        records = _table(path, text, TABLE_DELIMITERS[name[-4:]], text_field)
    else:
        return [text]
    docs = [_text_of(where, record, text_field, first=i == 0)
            for i, (where, record) in enumerate(records)]  # fmt: skip
    docs = [doc for doc in docs if doc.strip()]
    if not docs:
        raise DataError(f"{path} holds no documents with text in field {text_field!r}.")
    return docs


class _QuoteError(DataError):
    """A quote a table's quoting rules cannot read (see `_table`)."""


def _table(path: str, text: str, delimiter: str, text_field: str) -> list:
    """The `text_field` cells of a `.csv` / `.tsv` file, read as pandas and Hugging Face's csv
    loader read one: the first row names the columns; a cell in double quotes may hold the
    delimiter, newlines and doubled quotes (""); a row shorter than the header lacks the rest. A
    row longer than the header, or a quote left open, is an error naming its line: read
    leniently, one stray quote would swallow the rest of the file into one document. A TSV that
    quoting cannot read is read again as the IANA format defines TSV, without quoting (database
    and `paste` exports: a cell may start with a quote). A cell may hold a whole book (csv's
    128 KiB cell limit is lifted)."""
    csv.field_size_limit(2**31 - 1)
    try:
        return list(_cells(path, text, delimiter, text_field, csv.QUOTE_MINIMAL))
    except _QuoteError:
        if delimiter != "\t":
            raise
        try:
            return list(_cells(path, text, delimiter, text_field, csv.QUOTE_NONE))
        except DataError:
            pass
        raise


def _cells(path: str, text: str, delimiter: str, text_field: str, quoting: int):
    kind = "CSV" if delimiter == "," else "TSV"
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True,
                      quoting=quoting)  # fmt: skip
    start = 1  # the line the row being read starts on
    try:
        header = [name.strip() for name in next(rows, [])]
        if text_field not in header:
            raise NoTextField(f"{path}: {text_field!r} is not a column; its columns: {header}; "
                              f"{FIELD_FIX} to one of them.")  # fmt: skip
        column = header.index(text_field)
        start = rows.line_num + 1
        for row in rows:
            if len(row) > len(header):
                raise DataError(f"{path}:{start} has {len(row)} {kind} fields where its header "
                                f"has {len(header)}; put a cell holding {delimiter!r} in double "
                                "quotes.")  # fmt: skip
            if column < len(row):
                yield f"{path}:{start}", row[column]
            start = rows.line_num + 1
    except csv.Error as e:
        if str(e) == "unexpected end of data":
            raise _QuoteError(f"{path}:{start}: a quoted {kind} cell starts on this line and "
                              "never ends (a stray double quote?); close it or quote the cell "
                              'whole, its quotes doubled ("").') from None  # fmt: skip
        raise _QuoteError(f"{path}:{start} is not {kind} ({e}); a cell holding quotes must be "
                          'quoted whole, its quotes doubled ("").') from None  # fmt: skip


def _json_lines(path: str, text: str):
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}:{number} is not JSON ({e.msg}); one object per line."
            ) from None


def _json(path: str, text: str) -> list:
    """A `.json` file: one array of records (or of strings), one object, or JSON Lines (C4)."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as e:
        if text.lstrip().startswith("["):
            raise DataError(f"{path} is not JSON ({e.msg} at line {e.lineno}); fix the file or "
                            "give it one object per line.") from None  # fmt: skip
        return list(_json_lines(path, text))
    if isinstance(whole, list):
        return [(f"{path} item {i}", record) for i, record in enumerate(whole)]
    return [(path, whole)]


def _text_of(where: str, record, text_field: str, *, first: bool = False) -> str:
    if isinstance(record, str):
        return record
    value = record.get(text_field) if isinstance(record, dict) else None
    if not isinstance(value, str):
        error = NoTextField if first else DataError
        raise error(f"{where} has no text field {text_field!r}; {FIELD_FIX} to the field "
                        "that holds the text.")  # fmt: skip
    return value


def is_parquet(raw: bytes) -> bool:
    """Apache Parquet data ('PAR1' first; a file cut short lacks the one at its end and is
    then reported damaged, not binary)."""
    return raw[:4] == b"PAR1"


def parquet_documents(path: str, raw: bytes, text_field: str = "text") -> list[str]:
    """One document per row of a Parquet file's `text_field` column (null and blank rows left
    out); a missing or non-text column is a DataError that lists the file's text columns."""
    try:
        import pyarrow as pa  # noqa: PLC0415  (tensorflow-datasets' dependency; Parquet only)
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise DataError(f"Corpus file {path} is Parquet, which needs pyarrow: pip install "
                        "pyarrow") from None  # fmt: skip
    try:
        schema = pq.read_schema(io.BytesIO(raw))
        kinds = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
        texts = [f.name for f in schema if any(kind(f.type) for kind in kinds)]
        if text_field not in texts:
            what = "is not a text column" if text_field in schema.names else "is not a column"
            raise NoTextField(f"{path}: {text_field!r} {what}; its text columns: {texts}; "
                            f"{FIELD_FIX} to one of them.")  # fmt: skip
        rows = pq.read_table(io.BytesIO(raw), columns=[text_field]).column(0).to_pylist()
    except DataError:  # NoTextField
        raise
    except Exception as e:  # noqa: BLE001  pyarrow's ArrowInvalid, OSError, ...
        raise DataError(f"Corpus file {path} is a damaged Parquet file ({first_line(e)}); "
                        "download it again or leave it out.") from None  # fmt: skip
    docs = [_newlines(row) for row in rows if row and row.strip()]
    if not docs:
        raise DataError(f"{path} holds no documents with text in column {text_field!r}.")
    return docs
