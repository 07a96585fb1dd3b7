"""From a corpus file's text to its documents: JSON records and tables.

A file's name (without its compression suffix) says how: `.jsonl` / `.ndjson` one object per
line, `.json` an array of records or strings, one object, or JSON Lines (C4's shards);
`.csv` / `.tsv` (spreadsheet exports, Kaggle datasets) one row per document; anything else is
one document. Text with no name to tell (standard input, a pipe, a file without an extension:
a Hugging Face cache blob) is known by its first line. A record's text may be a string, a list
of them, a chat or a nested field (`record_text`); Parquet and Arrow files: `columns.py`. Every
problem is a one-line `DataError` naming the file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json

from llp_jax.data import record_text, text_bytes
from llp_jax.data.corpus import DataError
from llp_jax.data.record_text import MISSING

JSONL_SUFFIXES = (".jsonl", ".ndjson")
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
FIELD_FIX = "set --config.data.text_field (experiments.evaluate --text: --text_field)"


class NoTextField(DataError):
    """A records or table file (JSON, CSV, Parquet) whose first record, header or schema has no
    `text_field`: raised for named files; folder and glob walks skip it (a project folder's
    package.json or results.csv is not the corpus) unless no file of the walk has the field."""


def documents(path: str, text: str, text_field: str = "text") -> list[str]:
    """The documents of a file's text, by its name without a compression suffix."""
    name = path
    for suffix in text_bytes.COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    if _nameless(name) and (sniffed := _sniffed(text, text_field)):
        name = sniffed
        print(f"[llp_jax.data] {'standard input' if path == '-' else path} read as "
              f"{_KINDS[name]} ({_WHY[name].format(text_field)}); save it as a .txt file to "
              "read it as plain text")  # fmt: skip
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


_KINDS = {".jsonl": "JSON Lines", ".json": "JSON", ".csv": "CSV", ".tsv": "TSV"}
_WHY = {".jsonl": "its first line is a JSON record", ".json": "it is a JSON array of records",
        ".csv": "its header names the column {!r}", ".tsv": "its header names the column {!r}"}  # fmt: skip


def _nameless(name: str) -> bool:
    """Standard input ('-'), a pipe (/dev/fd/63), a file without an extension (a Hugging Face
    cache blob): no name says which format the text is in."""
    return "." not in name.rsplit("/", 1)[-1]


def _sniffed(text: str, text_field: str) -> str | None:
    """The suffix a nameless text's records would be named with, or None (plain text): a first
    line that is a JSON object (JSON Lines), a whole that is a JSON array of records or strings,
    or a first row that is a CSV / TSV header naming `text_field` above a row as wide (cells
    between commas, or Excel's semicolons, `_locale_delimiter`). Prose
    that merely starts with a brace or holds commas is none of these."""
    body = text.lstrip()
    first = next(_lines(body), "").rstrip("\n")
    with contextlib.suppress(ValueError):
        if first.startswith("{") and isinstance(json.loads(first), dict):
            return ".jsonl"
    with contextlib.suppress(ValueError):
        whole = json.loads(body) if body.startswith("[") else None
        if isinstance(whole, list) and whole and all(isinstance(r, dict | str) for r in whole):
            return ".json"
    for delimiter, suffix in (("\t", ".tsv"), (",", ".csv"), (";", ".csv"), ("|", ".csv")):
        if delimiter not in first:
            continue
        with contextlib.suppress(csv.Error):  # a header naming the field, a record as wide
            rows = csv.reader(_lines(body), delimiter=delimiter)
            header, record = next(rows, []), next(rows, [])
            if text_field in (cell.strip() for cell in header) and len(record) == len(header):
                return suffix
    return None


def _lines(text: str):
    """`text`'s lines, newlines kept, one at a time: a sniff reads two rows, not a copy of a
    whole corpus (as split or io.StringIO make)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


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
    delimiter = _locale_delimiter(path, text, delimiter, text_field)
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


def _locale_delimiter(path: str, text: str, delimiter: str, text_field: str) -> str:
    """A `.csv` whose header has no comma but names the text field between semicolons (Excel's
    "CSV" where the decimal separator is a comma: German, French, ...), or '|', is read with
    that separator, said in one line."""
    header = text.split("\n", 1)[0]
    if delimiter != "," or "," in header:
        return delimiter
    for other in (";", "|"):
        if other in header and text_field in (c.strip().strip('"') for c in header.split(other)):
            print(f"[llp_jax.data] {path} read with {other!r} between cells (its header row)")
            return other
    return delimiter


def _cells(path: str, text: str, delimiter: str, text_field: str, quoting: int):
    kind = "TSV" if delimiter == "\t" else "CSV"
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
    """A record's text (`record_text`: a string, a list of them, a chat, a nested field); a
    null one (`datasets`' to_json writes a missing value so) is no document, as a Parquet null
    is."""
    if isinstance(record, str):
        return record
    value = record_text.lookup(record, text_field) if isinstance(record, dict) else MISSING
    if value is None:
        return ""
    text = record_text.as_text(value)
    if text is None:
        error = NoTextField if first else DataError
        raise error(f"{where} has no text field {text_field!r} ({_fields(record, value)}); "
                    f"{FIELD_FIX} to the field that holds the text.")  # fmt: skip
    return text


def _fields(record, value) -> str:
    """What a record holds instead: its fields with text in them (the choices for text_field)."""
    if not isinstance(record, dict):
        return f"the record is a {type(record).__name__}, not an object"
    kind = "" if value is MISSING else type(value).__name__
    there = f"it is {'an' if kind[:1] in tuple('aeiou') else 'a'} {kind}; " if kind else ""
    texts = record_text.text_fields(record)
    if texts:
        return f"{there}its text fields: {texts}"
    return f"{there}no field holds text: {list(record)}"
