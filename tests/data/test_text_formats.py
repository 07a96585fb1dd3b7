"""Corpus files as real corpora ship them: C4's JSON Lines as `.json.gz`, the Pile's `.jsonl.zst`
(a streamed Zstandard frame without a content size), `.xz` / `.bz2` dumps, "Unicode" text from a
Windows editor (UTF-16 with a byte-order mark), JSON arrays of records, Hugging Face's Parquet
shards (written by pyarrow as `datasets` writes them: several row groups, snappy or zstd pages,
other columns beside the text, large strings, nulls), CSV and TSV as pyarrow, Python's csv
module and Excel write them (quoted cells with commas, quotes and newlines; a byte-order mark
and CRLF); each read to the same
documents as the plain file, through the same corpus loader the trainer uses. Damaged or
mislabelled files are one-line errors naming the file, and a folder walk skips a file that
decompresses to binary."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import zstandard

from llp_jax.data import DataError, load_corpus, user_text

DOCS = [f"Document {i}: it is a truth universally acknowledged, caf\u00e9 \u2014 {'x' * i}.\n"
        for i in range(30)]  # fmt: skip


def _jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _zstd_stream(data: bytes) -> bytes:
    """As the Pile's shards were written: a streamed frame, no content size in its header."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as writer:
        writer.write(data)
    return out.getvalue()


C4 = [{"text": d, "timestamp": "2019-04-25T12:57:54Z", "url": f"https://e.com/{i}"}
      for i, d in enumerate(DOCS)]  # fmt: skip


def _parquet(table: pa.Table, **options) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=7, **options)  # several row groups
    return out.getvalue()


def _arrow(table: pa.Table, *, stream: bool) -> bytes:
    """Arrow IPC as Hugging Face `datasets` caches a split (`ArrowWriter`: a record batch
    stream, its features in the schema's 'huggingface' metadata, several batches), or the IPC
    file format ('ARROW1')."""
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": {}}})})
    out = io.BytesIO()
    new = pa.ipc.new_stream if stream else pa.ipc.new_file
    with new(out, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=7):
            writer.write_batch(batch)
    return out.getvalue()


def _csv(rows, *, delimiter=",", bom=False) -> bytes:
    """As Python's csv module (and Excel, with `bom`: "CSV UTF-8") writes a table: CRLF line
    ends, a cell quoted only where it holds the delimiter, a quote or a newline."""
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter).writerows(rows)
    return ("\ufeff" if bom else "").encode() + out.getvalue().encode()


def _arrow_csv(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pa_csv.write_csv(table, out)  # every string quoted, header too; LF line ends
    return out.getvalue()


HF = pa.table({"text": DOCS, "id": list(range(len(DOCS))),
               "meta": [{"source": "austen", "len": len(d)} for d in DOCS]})  # fmt: skip
WITH_NULLS = pa.table({"content": pa.array([*DOCS[:5], None, "  ", *DOCS[5:]], pa.large_string())})
PILE = [{"text": d, "meta": {"pile_set_name": "Pile-CC"}} for d in DOCS]
# name -> bytes; every one holds exactly DOCS (one document per record, or all of them whole).
FILES = {
    "c4-train.00000-of-01024.json.gz": gzip.compress(_jsonl(C4)),
    "00.jsonl.zst": _zstd_stream(_jsonl(PILE)),
    "records.jsonl.bz2": bz2.compress(_jsonl(PILE)),
    "records.ndjson.xz": lzma.compress(_jsonl(C4)),
    "array.json": json.dumps(C4, indent=2).encode(),
    "strings.json": json.dumps(DOCS).encode(),
    "c4-validation.json": _jsonl(C4),  # C4's uncompressed shards: JSON Lines named .json
    "train-00000-of-00001.parquet": _parquet(HF),  # snappy pages, pyarrow's default
    "zstd_pages.parquet": _parquet(HF, compression="zstd"),
    "no_suffix_shard": _parquet(HF),  # known by its magic bytes
    "cache-5f3a9c1e2b7d4f60.arrow": _arrow(HF, stream=True),  # datasets' cache, save_to_disk
    "ipc_file.arrow": _arrow(WITH_NULLS.rename_columns(["text"]), stream=False),
    "train.csv": _arrow_csv(HF.drop_columns(["meta"])),
    "excel.csv": _csv(
        [["id", "text", "label"], *([i, d, "pos"] for i, d in enumerate(DOCS))], bom=True
    ),
    "reviews.tsv.gz": gzip.compress(
        _csv([["text", "stars"], *([d, 5] for d in DOCS)], delimiter="\t")
    ),
    "excel_de.csv": _csv(
        [["id", "text"], *([i, d] for i, d in enumerate(DOCS))], delimiter=";", bom=True
    ),  # Excel where the decimal separator is a comma  # fmt: skip
}
WHOLE = {
    "book.txt.gz": gzip.compress("".join(DOCS).encode()),
    "book.txt.xz": lzma.compress("".join(DOCS).encode()),
    "book.txt.bz2": bz2.compress("".join(DOCS).encode()),
    "book.txt.zst": zstandard.ZstdCompressor().compress("".join(DOCS).encode()),
    "two_frames.txt.zst": _zstd_stream("".join(DOCS[:9]).encode())
    + _zstd_stream("".join(DOCS[9:]).encode()),
    "two_members.txt.gz": gzip.compress("".join(DOCS[:9]).encode())
    + gzip.compress("".join(DOCS[9:]).encode()),  # as `cat a.gz b.gz` makes
    "no_extension": gzip.compress("".join(DOCS).encode()),  # known by its first bytes
    "notepad_unicode.txt": "".join(DOCS).encode("utf-16"),  # little-endian, BOM first
    "utf16_be.txt": b"\xfe\xff" + "".join(DOCS).encode("utf-16-be"),
    "utf32.txt": "".join(DOCS).encode("utf-32"),
    "windows.txt": "".join(DOCS).replace("\n", "\r\n").encode("utf-16"),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_record_files_give_one_document_per_record(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(FILES[name])
    assert user_text.read_documents(str(path)) == DOCS
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(_jsonl({"text": d} for d in DOCS))
    corpus = load_corpus(str(path))
    assert "30 documents" in corpus.description
    assert corpus.splits == load_corpus(str(plain)).splits


@pytest.mark.parametrize("name", sorted(WHOLE))
def test_compressed_and_unicode_text_reads_as_the_plain_file(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(WHOLE[name])
    assert user_text.read_documents(str(path)) == ["".join(DOCS)]


def test_a_parquet_column_other_than_text_and_its_nulls(tmp_path):
    path = tmp_path / "data.parquet"
    path.write_bytes(_parquet(WITH_NULLS))
    assert user_text.read_documents(str(path), text_field="content") == DOCS  # nulls, blanks out


def test_json_nulls_are_no_documents_as_parquet_nulls_are(tmp_path):
    """A null text (what `datasets`' Dataset.to_json writes for a missing value) stopped the
    whole corpus: 'has no text field 'text' (it is a NoneType...)', where the same rows as
    Parquet lost only their null rows."""
    records = [{"text": d if i % 2 == 0 else None, "id": i} for i, d in enumerate(DOCS * 2)]
    records.insert(0, {"text": None, "id": -1})  # the first record too
    want = [r["text"] for r in records if r["text"]]
    lines, array = tmp_path / "train.jsonl", tmp_path / "train.json"
    lines.write_bytes(_jsonl(records))
    array.write_text(json.dumps(records))
    table = tmp_path / "train.parquet"
    table.write_bytes(_parquet(pa.table({"text": [r["text"] for r in records]})))
    for path in (lines, array, table):
        assert user_text.read_documents(str(path)) == want, path
    lines.write_bytes(_jsonl([{"text": None}, {"text": None}]))
    with pytest.raises(DataError, match="train.jsonl holds no documents with text in field"):
        user_text.read_documents(str(lines))
    lines.write_bytes(_jsonl([{"text": "a"}, {"text": 12}]))  # a number is not a missing text
    with pytest.raises(DataError, match=r"train.jsonl:2 has no text field 'text' \(it is an int"):
        user_text.read_documents(str(lines))


def test_a_json_array_takes_the_text_field(tmp_path):
    alpaca = [{"instruction": "Say hi", "input": "", "output": d} for d in DOCS]
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps(alpaca))
    assert user_text.read_documents(str(path), text_field="output") == DOCS
    with pytest.raises(DataError, match=r"alpaca_data.json item 0 has no text field 'text' "
                       r"\(its text fields: \['instruction', 'input', 'output'\]\)"):  # fmt: skip
        user_text.read_documents(str(path))
    chat = tmp_path / "chat.jsonl"  # a field that is there but holds no text; none that does
    chat.write_text(json.dumps({"text": [1, 2], "messages": [{"id": 3}], "meta": {"n": 1}}))
    with pytest.raises(DataError, match=r"chat.jsonl:1 has no text field 'text' \(it is a "
                       r"list; no field holds text: \['text', 'messages', 'meta'\]\)"):  # fmt: skip
        user_text.read_documents(str(chat))
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"text": DOCS[0], "id": 1}, indent=2))
    assert user_text.read_documents(str(one)) == [DOCS[0]]


def test_csv_cells_hold_quotes_books_and_gaps(tmp_path):
    book = "Chapter 1\n" + 'She said, "Quite so."\n' * 8000  # 190 KB: past csv's cell limit
    rows = [["title", "review", "stars"], ["a", book, 5], ["b", "", 1], ["c"], [],
            ["d", '"Quoted", she said\ttwice', 4]]  # fmt: skip
    path = tmp_path / "reviews.csv"
    path.write_bytes(_csv(rows))
    expected = [book, '"Quoted", she said\ttwice']  # blank, missing: out
    assert user_text.read_documents(str(path), text_field="review") == expected
    with pytest.raises(
        DataError, match=r"'text' is not a column; its columns: \['title', 'review', "
    ):
        user_text.read_documents(str(path))


@pytest.mark.parametrize("separator", [";", "|"])
def test_a_csv_with_semicolons_reads_by_its_header(separator, tmp_path, capsys):
    """Excel saves "CSV" with ';' where a comma is the decimal separator (German, French)."""
    rows = [["id", "text"], [1, "Gut; sehr gut, wirklich."], [2, 'Er sagte "ja"\nund ging.']]
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=separator).writerows(rows)
    path = tmp_path / "bewertungen.csv"
    path.write_text(out.getvalue(), encoding="utf-8-sig")  # Excel's "CSV UTF-8": a BOM
    assert user_text.read_documents(str(path)) == [rows[1][1], rows[2][1]]
    assert f"read with {separator!r} between cells" in capsys.readouterr().out


def test_a_tsv_without_quoting_reads_as_iana_tsv(tmp_path):
    """Database and `paste` exports write TSV as IANA defines it, with no quoting: a cell may
    start with a quote that never closes as CSV's rules want."""
    sentences = ['"Hello," she said, "how are you?"', "Plain text.", '"Quite."', "It's 5\" long."]
    path = tmp_path / "sentences.tsv"
    path.write_text("id\tlang\ttext\n" + "".join(f"{i}\teng\t{s}\n" for i, s in
                                                 enumerate(sentences)))  # fmt: skip
    assert user_text.read_documents(str(path)) == sentences


BROKEN = {
    "cut.txt.gz": (gzip.compress(DOCS[0].encode() * 50)[:-30], "damaged gzip file"),
    "cut.jsonl.zst": (_zstd_stream(_jsonl(PILE))[:-40], "damaged Zstandard file"),
    "cut.xz": (lzma.compress(DOCS[0].encode())[:-10], "damaged xz file"),
    "cut.bz2": (bz2.compress(DOCS[0].encode())[:-10], "damaged bzip2 file"),
    "bad_array.json": (b'[{"text": "a"},\n {"text": }]', "bad_array.json is not JSON"),
    "bad_line.jsonl.gz": (gzip.compress(b'{"text": "a"}\nnot json\n'), "bad_line.jsonl.gz:2"),
    "fake_bom.txt": (b"\xff\xfe" + b"\x00\xd8", "not UTF-16"),  # a lone surrogate
    "empty.txt.gz": (gzip.compress(b"  \n"), "is empty"),
    "cut.parquet": (_parquet(HF)[:-100], "damaged Parquet file"),
    "other_column.parquet": (_parquet(WITH_NULLS), "'text' is not a column; its text columns: "),
    "int_column.parquet": (_parquet(pa.table({"text": [1, 2]})), "'text' is not a text column"),
    "cut.arrow": (_arrow(HF, stream=True)[:-300], "damaged Arrow file"),
    "cut_ipc.arrow": (_arrow(HF, stream=False)[:-100], "damaged Arrow file"),
    "other_column.arrow": (_arrow(WITH_NULLS, stream=True), "'text' is not a column; its text "),
    "other_column.csv": (_csv([["id", "body"], [1, "a"]]), "'text' is not a column; its columns: "),
    "open_quote.csv": (
        b'id,text\n1,a\n2,"b\n3,c\n4,d\n',
        r"open_quote.csv:3: a quoted CSV cell starts",
    ),
    "long_row.tsv": (
        b"text\tid\na\t1\nb\t2\tx\n",
        r"long_row.tsv:3 has 3 TSV fields where its header has 2",
    ),
    "bad_quote.csv": (b'text\n"a" b\n', r"bad_quote.csv:2 is not CSV"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_damaged_files_are_one_line_errors_naming_the_file(name, tmp_path):
    data, fragment = BROKEN[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=fragment) as e:
        load_corpus(str(path))
    assert name in str(e.value) and "\n" not in str(e.value)


def test_a_folder_walk_reads_compressed_text_and_skips_compressed_binaries(tmp_path, capsys):
    root = tmp_path / "shards"
    root.mkdir()
    (root / "c4-train.00000-of-01024.json.gz").write_bytes(FILES["c4-train.00000-of-01024.json.gz"])
    (root / "00.jsonl.zst").write_bytes(FILES["00.jsonl.zst"])
    (root / "train-00000-of-00001.parquet").write_bytes(FILES["train-00000-of-00001.parquet"])
    # decompresses to binary (an archive is read as a folder: test_archives.py)
    (root / "weights.npy.gz").write_bytes(gzip.compress(b"\x93NUMPY\x01\x00v\x00" + bytes(64)))
    corpus = load_corpus(str(root))
    assert (
        "90 documents" in corpus.description and "1 non-text file(s) skipped" in corpus.description
    )
    assert "skipped 1 file(s) that are not text" in capsys.readouterr().out


def test_a_folder_walk_skips_record_files_without_the_text_field(tmp_path, capsys):
    """A project folder's package.json or results.csv is not the corpus: a walk skips record and
    table files whose first record, header or schema lacks the field, with a line; named, or
    when no file of the walk has the field, such a file is the one-line error it was."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "notes.txt").write_text("".join(DOCS))
    (root / "package.json").write_text(json.dumps({"name": "x", "version": "1.0"}))
    (root / "results.csv").write_bytes(_csv([["epoch", "loss"], [1, 2.5], [2, 2.1]]))
    (root / "table.parquet").write_bytes(_parquet(pa.table({"id": [1, 2]})))
    docs, _ = user_text.read_spec_documents(str(root))
    assert docs == ["".join(DOCS)]
    out = capsys.readouterr().out
    assert "skipped 3 record or table file(s) without the text field 'text': " in out
    with pytest.raises(DataError, match="results.csv: 'text' is not a column"):
        user_text.read_spec_documents(str(root / "results.csv"))  # named
    (root / "notes.txt").unlink()
    with pytest.raises(DataError, match="has no text field 'text'|'text' is not a column"):
        user_text.read_spec_documents(str(root))  # nothing else in the walk
    # A record without the field after records with it is a damaged file, walk or not.
    (root / "notes.txt").write_text("".join(DOCS))
    (root / "chats.jsonl").write_bytes(_jsonl([{"text": "hello"}, {"message": "hi"}]))
    with pytest.raises(DataError, match=r"chats.jsonl:2 has no text field 'text'"):
        user_text.read_spec_documents(str(root))
