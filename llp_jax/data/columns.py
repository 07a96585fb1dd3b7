"""Apache Parquet and Arrow files as corpora: a document per row of the text column.

Parquet is how Hugging Face datasets ship their splits (`train-00000-of-00002.parquet`), known
by its magic bytes; Arrow is how `datasets` caches them and `save_to_disk` writes them
(`*.arrow`). The text column may be a string column, or a nested one read as `record_text`
reads a JSON field: a list of strings, a chat (`messages`: a list of {role, content} structs),
a struct's field by a dotted path. Every problem is a one-line `DataError` naming the file.
"""

from __future__ import annotations

import io

from llp_jax.data import record_text, text_bytes
from llp_jax.data.corpus import DataError
from llp_jax.data.record_text import MISSING
from llp_jax.data.records import FIELD_FIX, NoTextField
from llp_jax.errors import first_line


def is_parquet(raw: bytes) -> bool:
    """Apache Parquet data ('PAR1' first; a file cut short lacks the one at its end and is
    then reported damaged, not binary)."""
    return raw[:4] == b"PAR1"


def is_arrow(path: str, raw: bytes) -> bool:
    """Apache Arrow IPC data: the file format ('ARROW1' first), or the stream format in which
    Hugging Face `datasets` caches a split (`cache-*.arrow`, `save_to_disk`'s
    `data-00000-of-00001.arrow`), known by its name and its first continuation marker."""
    return raw[:6] == b"ARROW1" or path.endswith(".arrow") and raw[:4] == b"\xff\xff\xff\xff"


def parquet_documents(path: str, raw: bytes, text_field: str = "text") -> list[str]:
    """One document per row of a Parquet file's `text_field` column (null and blank rows left
    out); a missing or non-text column is a DataError that lists the file's text columns."""
    return _column_documents(path, raw, text_field, "Parquet")


def arrow_documents(path: str, raw: bytes, text_field: str = "text") -> list[str]:
    """`parquet_documents` of an Arrow IPC file or stream (`is_arrow`)."""
    return _column_documents(path, raw, text_field, "Arrow")


def _row_text(value, rest: str) -> str | None:
    """A nested column's row as text: the row itself (a list of strings, a chat), or its field
    `rest` (a dotted path into a struct)."""
    if value is None:
        return None
    if rest:
        value = record_text.lookup(value, rest) if isinstance(value, dict) else MISSING
    return record_text.as_text(value) if value is not MISSING else None


def _nested_texts(value) -> list[str]:
    """The text a nested column's first row offers: '' for the row itself, else its fields."""
    if record_text.as_text(value) is not None:
        return [""]
    return record_text.text_fields(value) if isinstance(value, dict) else []


def _column_documents(path: str, raw: bytes, text_field: str, kind: str) -> list[str]:
    try:
        import pyarrow as pa  # noqa: PLC0415  (tensorflow-datasets' dependency; tables only)
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise DataError(f"Corpus file {path} is {kind}, which needs pyarrow: pip install "
                        "pyarrow") from None  # fmt: skip
    try:
        if kind == "Parquet":
            schema = pq.read_schema(io.BytesIO(raw))
            table = lambda name: pq.read_table(io.BytesIO(raw), columns=[name])  # noqa: E731
        else:
            ipc = pa.ipc.open_file if raw[:6] == b"ARROW1" else pa.ipc.open_stream
            whole = ipc(pa.BufferReader(raw)).read_all()
            schema, table = whole.schema, lambda name: whole.select([name])
        kinds = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
        texts = [f.name for f in schema if any(is_text(f.type) for is_text in kinds)]
        if text_field in texts:
            rows = table(text_field).column(0).to_pylist()
        else:  # a list (of strings, a chat) or a nested field: by the rows' values
            top = text_field if text_field in schema.names else text_field.split(".", 1)[0]
            nested = [f.name for f in schema if pa.types.is_nested(f.type)]
            values = table(top).column(0).to_pylist() if top in nested else []
            rows = [_row_text(v, text_field[len(top) + 1 :]) for v in values]
            if not values or any(r is None for r, v in zip(rows, values) if v is not None):
                what = "is not a text column" if top in schema.names else "is not a column"
                for column in nested:  # what each nested column's first row offers
                    first = next((v for v in table(column).column(0).to_pylist() if v), None)
                    texts += [".".join(filter(None, (column, f))) for f in _nested_texts(first)]
                raise NoTextField(f"{path}: {text_field!r} {what}; its text columns: {texts}; "
                                  f"{FIELD_FIX} to one of them.")  # fmt: skip
    except DataError:  # NoTextField
        raise
    except Exception as e:  # noqa: BLE001  pyarrow's ArrowInvalid, OSError, ...
        raise DataError(f"Corpus file {path} is a damaged {kind} file ({first_line(e)}); "
                        "download it again or leave it out.") from None  # fmt: skip
    docs = [text_bytes.newlines(row) for row in rows if row and row.strip()]
    if not docs:
        raise DataError(f"{path} holds no documents with text in column {text_field!r}.")
    return docs
