"""Records with no name to say their format (standard input, a pipe such as bash's
<(zcat x), a file without an extension: a Hugging Face cache blob) are known by their first
line: every record file of test_text_formats.py read nameless gives the same documents, and
prose that only looks like records (braces, brackets, commas) stays one plain document."""

from __future__ import annotations

import io
import os
import threading

import pytest

from llp_jax.data import user_text
from tests.data.test_text_formats import DOCS, FILES, WHOLE


class _Stdin:
    """sys.stdin as a pipe gives it: bytes through .buffer, not a terminal."""

    def __init__(self, raw: bytes):
        self.buffer = io.BytesIO(raw)

    def isatty(self) -> bool:
        return False


def _nameless(how: str, raw: bytes, tmp_path, monkeypatch) -> str:
    """The spec naming `raw` with no name to tell its format: standard input, a pipe (bash's
    <(zcat x) is /dev/fd/63) or a file with no extension (a Hugging Face cache blob)."""
    if how == "stdin":
        monkeypatch.setattr("sys.stdin", _Stdin(raw))
        return "-"
    if how == "pipe":
        read, write = os.pipe()
        threading.Thread(target=lambda: (os.write(write, raw), os.close(write))).start()
        return f"/dev/fd/{read}"
    blob = tmp_path / "blobs" / "8f2a61c3e0b94d57"
    blob.parent.mkdir()
    blob.write_bytes(raw)
    return str(blob)


# (An Arrow stream is known by its name: its first bytes are any IPC message's.)
NAMELESS = {
    k: v for k, v in FILES.items() if k not in ("no_suffix_shard", "cache-5f3a9c1e2b7d4f60.arrow")
}


@pytest.mark.parametrize("how", ["stdin", "pipe", "blob"])
@pytest.mark.parametrize("name", sorted(NAMELESS))
def test_records_without_a_name_are_known_by_their_text(name, how, tmp_path, monkeypatch, capsys):
    """Standard input, a pipe and an extensionless file have no name to say 'JSON Lines' or
    'CSV': `cat reviews.csv | evaluate --text=- --text_field=review` scored the CSV syntax as
    one plain document. Records are known by their first line (a JSON object, a JSON array, a
    header naming the text field), said in one line."""
    spec = _nameless(how, FILES[name], tmp_path, monkeypatch)
    docs, _ = user_text.read_spec_documents(spec, once=True)
    assert docs == DOCS
    if name.endswith((".parquet", ".arrow")):
        return  # Parquet and the Arrow file format are known by their magic bytes
    kind = ("CSV" if ".csv" in name else "TSV" if ".tsv" in name else
            "JSON" if name in ("array.json", "strings.json") else "JSON Lines")  # fmt: skip
    assert f"read as {kind} (" in capsys.readouterr().out


PLAIN_LOOKALIKES = {
    "a brace": "{ a note in braces }\nIt is a truth.\n",
    "a JSON line then prose": '{"text": "x"} is how a record looks.\nIt is a truth.\n',
    "commas": "It is a truth, text, universally acknowledged.\nMore.\n",
    "a bracket": "[1] Austen, J. Pride and Prejudice.\n[2] Emma.\n",
    "the field alone": "text\nIt is a truth.\n",
}


@pytest.mark.parametrize("how", ["stdin", "blob"])
@pytest.mark.parametrize("text", sorted(PLAIN_LOOKALIKES))
def test_nameless_plain_text_stays_one_document(text, how, tmp_path, monkeypatch, capsys):
    raw = PLAIN_LOOKALIKES[text].encode()
    assert user_text.read_spec_documents(_nameless(how, raw, tmp_path, monkeypatch),
                                         once=True)[0] == [raw.decode()]  # fmt: skip
    assert "read as" not in capsys.readouterr().out
    spec = _nameless(how, WHOLE["book.txt.gz"], tmp_path / "b", monkeypatch) if how == "stdin" \
        else None  # fmt: skip
    if spec:
        assert user_text.read_spec_documents(spec, once=True)[0] == ["".join(DOCS)]
