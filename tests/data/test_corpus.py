"""Tests for llp_jax.data.corpus: the checksummed Austen corpus, user text loading and errors."""

import logging
import lzma

import pytest

from llp_jax.data import corpus as corpus_lib
from llp_jax.data import load_corpus, user_text
from llp_jax.data.corpus import DataError


@pytest.fixture(scope="module")
def austen():
    return corpus_lib.load_austen()


def _write(path, data: bytes | str):
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_austen_checksum_verified_and_splits_are_whole_novels(austen):
    raw = lzma.open(corpus_lib.default_austen_path()).read().decode()
    lines = raw.split("\n")
    # Whole novels: each split starts with a title page and ends where its last novel ends.
    assert austen.splits["validation"].startswith("Persuasion\n")
    assert austen.splits["validation"].endswith("Finis")
    assert austen.splits["test"].startswith("NORTHANGER ABBEY\n")
    assert austen.splits["train"].startswith("EMMA\n")
    assert austen.splits["train"].endswith("THE END")
    for split, novels in corpus_lib.AUSTEN_SPLIT_NOVELS.items():
        for novel in novels:
            a, b = corpus_lib.AUSTEN_NOVELS[novel]
            assert "\n".join(lines[a - 1 : b]) in austen.splits[split]
    # Every line is in exactly one split: sizes add up (joins are single newlines).
    assert sum(len(s.split("\n")) for s in austen.splits.values()) == len(lines)
    assert austen.words == {s: len(t.split()) for s, t in austen.splits.items()}
    assert sum(austen.words.values()) == len(raw.split())


def test_austen_line_ranges_disjoint_and_cover_file():
    ranges = sorted((a, b or 10**9) for a, b in corpus_lib.AUSTEN_NOVELS.values())
    assert ranges[0][0] == 1
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        assert start == end + 1
    named = [n for names in corpus_lib.AUSTEN_SPLIT_NOVELS.values() for n in names]
    assert sorted(named) == sorted(corpus_lib.AUSTEN_NOVELS) and len(set(named)) == 6


def test_austen_splits_share_no_long_line(austen):
    long_lines = {s: {l for l in t.split("\n") if len(l) > 50} for s, t in austen.splits.items()}
    assert not long_lines["train"] & long_lines["validation"]
    assert not long_lines["train"] & long_lines["test"]
    assert not long_lines["validation"] & long_lines["test"]


def test_corrupted_austen_copy_rejected(tmp_path):
    raw = bytearray(lzma.open(corpus_lib.default_austen_path()).read())
    raw[1000] ^= 1
    bad = _write(tmp_path / "austen_novels.txt.xz", lzma.compress(bytes(raw), preset=0))
    with pytest.raises(DataError, match="Checksum mismatch") as e:
        corpus_lib.load_austen(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d / "missing.xz", "not found"),
        (lambda d: _write(d / "garbage.xz", b"not xz at all"), "not a valid .xz"),
    ],
)
def test_austen_bad_files(tmp_path, make, expected):
    with pytest.raises(DataError, match=expected) as e:
        corpus_lib.load_austen(make(tmp_path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d / "nope.txt", "does not exist"),
        (lambda d: _write(d / "empty.txt", b""), "is empty"),
        (lambda d: _write(d / "blank.txt", b" \n\n\t"), "is empty"),
        (lambda d: _write(d / "model.bin", b"PK\x03\x04\x00\x00binary"), "NUL bytes"),
        (lambda d: (d / "empty_dir").mkdir() or d / "empty_dir", "holds no files"),
        (lambda d: "", "Empty corpus specification"),
    ],
)
def test_text_corpus_errors_are_one_line(tmp_path, make, expected):
    with pytest.raises(DataError, match=expected) as e:
        load_corpus(str(make(tmp_path)) or " , ")
    message = str(e.value)
    assert "\n" not in message
    assert any(hint in message for hint in ("pass", "add", "remove")), message  # Says the fix.


def test_read_text_file_not_a_file(tmp_path):
    with pytest.raises(DataError, match="not a regular file"):
        user_text.read_text_file(tmp_path)


def test_invalid_utf8_replaced_and_counted_once(tmp_path, caplog, capsys):
    body = "plain text line\n" * 30  # 480 bytes: a few stray bytes are under 1%
    path = _write(tmp_path / "latin1.txt", body.encode() + "caf\xe9 na\xefve\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING):
        text = user_text.read_text_file(path)
    assert text == body + "caf\ufffd na\ufffdve\n"
    assert caplog.text.count("replaced 2 invalid UTF-8 bytes") == 1
    assert "replaced" not in capsys.readouterr().out  # one message, not two


def test_mostly_invalid_utf8_is_not_text(tmp_path):
    path = _write(tmp_path / "latin1.txt", ("\xe9\xe8\xea " * 30).encode("latin-1"))
    with pytest.raises(user_text.NotText, match="is not UTF-8 text"):
        user_text.read_text_file(path)


def test_newlines_and_bom_normalised(tmp_path):
    path = _write(tmp_path / "win.txt", "\ufeffa\r\nb\rc\n".encode())
    assert user_text.read_text_file(path) == "a\nb\nc\n"


def test_single_file_tail_split(tmp_path):
    lines = [f"line {i} " + "word " * (i % 7) for i in range(400)]
    path = _write(tmp_path / "book.txt", "\n".join(lines) + "\n")
    c = load_corpus(str(path))
    assert c.name == "book.txt"
    text = "\n".join(lines)
    assert "".join(c.splits[s] for s in corpus_lib.SPLITS) == text
    assert all(c.splits[s] for s in corpus_lib.SPLITS)
    # Cuts at line starts, about 90 / 5 / 5.
    assert c.splits["train"].endswith("\n") and c.splits["validation"].endswith("\n")
    assert 0.85 < len(c.splits["train"]) / len(text) < 0.95
    assert c.words["test"] == len(c.splits["test"].split())
    assert load_corpus(str(path)) == c  # Deterministic.


def test_folder_and_comma_list(tmp_path):
    d = tmp_path / "books"
    d.mkdir()
    _write(d / "b.txt", "second book\n" * 50)
    _write(d / "a.txt", "first book\n" * 50)
    _write(d / "notes.md", "notes, any text file\n" * 10)
    files, walked = user_text.expand_paths(str(d))
    assert files == [str(d / "a.txt"), str(d / "b.txt"), str(d / "notes.md")]
    assert set(walked) == set(files)
    extra = _write(tmp_path / "c.txt", "third\n" * 10)
    c = load_corpus(f"{d}, {extra}")
    assert c.name == "custom"
    joined = "".join(c.splits[s] for s in corpus_lib.SPLITS)
    assert joined.startswith("first book") and joined.endswith("third")
    with pytest.raises(DataError, match="does not exist"):
        load_corpus(f"{d},{tmp_path / 'typo.txt'}")


def test_many_documents_split_by_whole_document(tmp_path):
    for i in range(40):
        _write(tmp_path / f"doc{i:02d}.txt", f"document {i} text\n")
    c = load_corpus(str(tmp_path))
    assert c.splits["validation"] == "document 18 text\n\ndocument 38 text\n"
    assert c.splits["test"] == "document 19 text\n\ndocument 39 text\n"
    assert "document 18" not in c.splits["train"] and c.splits["train"].count("document") == 36


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_count_words_is_str_split_in_bounded_memory(chunk):
    """count_words counted with text.split(): a list of every word at once (1.4 GB of str
    objects for a 150 MB corpus). Counted a chunk at a time, it is the same count, for any
    whitespace str.split knows (U+00A0, U+2003, U+3000, \\x1c...) wherever a chunk ends."""
    import random

    from llp_jax.data import corpus as corpus_lib

    rng = random.Random(0)
    spaces = [" ", "\n", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2003", "\u3000"]
    pieces = ["word", "caf\u00e9", "\U0001f600", "x", "\u00a0\u00a0"]
    for _ in range(200):
        text = "".join(rng.choice(spaces + pieces) for _ in range(rng.randrange(0, 40)))
        assert corpus_lib.count_words(text, chunk=chunk) == len(text.split()), repr(text)
