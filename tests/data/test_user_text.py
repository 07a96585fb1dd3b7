"""A user's own text: recursive folders of any text files, globs, JSON Lines, names with commas;
files that are not text skipped (counted) in a walk and refused when named; real files from
this machine (Debian's license texts, no .txt among them)."""

from __future__ import annotations

import json
import os

import pytest

from llp_jax.data import DataError, load_corpus, user_text


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def test_folders_are_walked_for_any_text_file(tmp_path, capsys):
    root = tmp_path / "notes"
    _write(root / "a.md", "alpha\n" * 20)
    _write(root / "sub" / "b.rst", "beta\n" * 20)
    _write(root / "sub" / "deeper" / "README", "gamma\n" * 20)
    _write(root / ".hidden" / "secret.txt", "never read\n")
    _write(root / ".DS_Store", b"\x00\x01 binary")
    _write(root / "sub" / "photo.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    _write(root / "latin1.txt", ("\xe9\xe8 " * 50).encode("latin-1"))  # not UTF-8 at all
    corpus = load_corpus(str(root))
    text = "".join(corpus.splits.values())
    assert "alpha" in text and "beta" in text and "gamma" in text
    assert "never read" not in text
    assert "skipped 2 file(s) that are not text" in capsys.readouterr().out  # png, latin-1
    assert "2 non-text file(s) skipped" in corpus.description


def test_a_walk_skips_empty_files_and_a_named_empty_file_is_refused(tmp_path, capsys):
    """A project folder holds empty files (__init__.py, .keep, a blank note): one of them used to
    stop the whole corpus ('Corpus file .../__init__.py is empty'), for training and for
    evaluate --text alike."""
    root = tmp_path / "project"
    _write(root / "notes.md", "delta\n" * 40)
    empty = _write(root / "pkg" / "__init__.py", "")
    _write(root / "blank.txt", " \n\t\n")
    corpus = load_corpus(str(root))
    assert "delta" in "".join(corpus.splits.values())
    assert "skipped 2 file(s) that are not text (binary or empty)" in capsys.readouterr().out
    docs, skipped = user_text.read_spec_documents(str(root / "**" / "*.py"))
    assert docs == [] and skipped == [str(empty)]
    with pytest.raises(DataError, match="holds no text files \\(1 skipped: binary or empty\\)"):
        load_corpus(str(root / "pkg"))
    with pytest.raises(DataError, match=f"Corpus file {empty} is empty"):
        load_corpus(str(empty))


def test_a_named_file_must_be_text(tmp_path):
    binary = _write(tmp_path / "model.bin", b"PK\x03\x04\x00\x00binary")
    with pytest.raises(user_text.NotText, match="NUL bytes"):
        load_corpus(str(binary))


def test_globs_and_commas_in_names(tmp_path):
    _write(tmp_path / "docs" / "x" / "one.md", "one\n" * 30)
    _write(tmp_path / "docs" / "two.md", "two\n" * 30)
    _write(tmp_path / "docs" / "skip.txt", "three\n" * 30)
    corpus = load_corpus(str(tmp_path / "docs" / "**" / "*.md"))
    text = "".join(corpus.splits.values())
    assert "one" in text and "two" in text and "three" not in text
    odd = _write(tmp_path / "a, b.txt", "comma name\n" * 30)
    assert "comma name" in "".join(load_corpus(str(odd)).splits.values())
    with pytest.raises(DataError, match="matches no files"):
        load_corpus(str(tmp_path / "nothing" / "*.md"))


def test_json_lines_documents(tmp_path):
    path = tmp_path / "chats.jsonl"
    with open(path, "w") as f:
        for i in range(25):
            f.write(json.dumps({"message": f"message number {i}\n", "id": i}) + "\n")
    corpus = load_corpus(str(path), text_field="message")
    assert sum(len(d) for d in corpus.documents.values()) == 25  # one document per record
    assert corpus.documents["validation"] == ["message number 18\n"]  # whole-document split
    with pytest.raises(DataError, match="has no text field 'text'"):
        load_corpus(str(path))
    bad = _write(tmp_path / "bad.jsonl", '{"text": "ok"}\nnot json\n')
    with pytest.raises(DataError, match="bad.jsonl:2 is not JSON"):
        load_corpus(str(bad))


@pytest.mark.skipif(not os.path.isdir("/usr/share/common-licenses"), reason="not Debian")
def test_real_license_texts_without_a_txt_suffix():
    corpus = load_corpus("/usr/share/common-licenses")  # the quoted "holds no *.txt files"
    text = "".join(corpus.splits.values())
    assert "Apache License" in text and "GNU GENERAL PUBLIC LICENSE" in text


@pytest.mark.parametrize("val, test", [(1.5, 0.05), (0.0, 0.05), (0.05, -0.1), (0.5, 0.5)])
def test_split_fractions_must_leave_three_non_empty_parts(tmp_path, val, test):
    path = tmp_path / "a.txt"
    path.write_text("some text\n" * 100)
    with pytest.raises(DataError, match=f"val_fraction={val} and test_fraction={test} must"):
        user_text.load_text_corpus(str(path), val_fraction=val, test_fraction=test)
    assert user_text.load_text_corpus(str(path), val_fraction=0.1, test_fraction=0.1).splits["test"]


def _linked_tree(tmp_path):
    """corpus/{a.txt, sub/b.txt}, a symlinked folder of books kept elsewhere, and two links
    back up the tree (as `ln -s .. up` leaves them): a loop a walk or `**` must not follow
    round (with two, Python's glob takes 2^40 paths)."""
    root = tmp_path / "corpus"
    _write(root / "a.txt", "alpha\n" * 30)
    _write(root / "sub" / "b.txt", "beta\n" * 30)
    _write(tmp_path / "elsewhere" / "books" / "c.txt", "gamma\n" * 30)
    (root / "linked_books").symlink_to(tmp_path / "elsewhere" / "books")
    (root / "sub" / "up").symlink_to("..")
    (root / "sub" / "up_again").symlink_to("..")
    return root


@pytest.mark.parametrize("spec", ["{}", "{}/", "{}/**/*.txt", "{}/**"])
def test_symlinked_folders_are_read_once_each(tmp_path, spec):
    """A folder walk skipped a symlinked folder's files (os.walk does not follow links), and
    `**` went round a loop (`ln -s .. up`) reading each file again at every depth: 41 copies of
    one book, the validation documents copies of training ones."""
    root = _linked_tree(tmp_path)
    files, found = user_text.expand_paths(spec.format(root))
    names = sorted(os.path.relpath(f, root) for f in files)
    assert names == ["a.txt", "linked_books/c.txt", "sub/b.txt"], names
    assert set(files) == found


def test_a_file_named_twice_is_read_once(tmp_path, capsys):
    root = _linked_tree(tmp_path)
    spec = f"{root}/a.txt,{root}/,{root}/sub/up/a.txt,{tmp_path}/elsewhere/books/c.txt"
    files, _ = user_text.expand_paths(spec)
    assert sorted(os.path.relpath(f, tmp_path) for f in files) == [
        "corpus/a.txt", "corpus/linked_books/c.txt", "corpus/sub/b.txt"]  # fmt: skip
    assert (
        "read 2 file(s) once that the corpus names by more than one path" in capsys.readouterr().out
    )


GLOB_TREE = ["a.txt", "b.md", ".hidden.txt", "x/c.txt", "x/y/d.txt", "x/y/e.md", "x/.git/f.txt",
             ".dot/g.txt", "x/.h.txt", "z/y/i.txt"]  # fmt: skip
PATTERNS = ["**/*.txt", "**", "**/y/*.txt", "x/**/*.txt", "x/**", "**/*", "*/y/*", "x/**/y/**",
            "**/.git/*.txt", "**/.*", ".dot/**/*.txt", "?/y/*.[tm][xd]*", "x/**/*.md", "**/x/**"]  # fmt: skip


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("absolute", [True, False])
def test_globs_match_as_python_glob_does_where_there_is_no_loop(pattern, absolute, tmp_path,
                                                                monkeypatch):  # fmt: skip
    """`**` is matched on the loop-safe walk; without links it matches what glob.glob does."""
    import glob

    for name in GLOB_TREE:
        _write(tmp_path / name, f"{name}\n")
    monkeypatch.chdir(tmp_path)
    spec = str(tmp_path / pattern) if absolute else pattern
    want = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
    if not want:
        with pytest.raises(DataError, match="matches no files"):
            user_text.expand_paths(spec)
        return
    assert user_text.expand_paths(spec)[0] == want


def test_a_folder_reached_twice_is_kept_under_the_first_name_in_sorted_order(tmp_path):
    """Which of two names of one folder a walk keeps decided the documents' order (and so the
    split); it followed the file system's listing order, which differs between machines."""
    _write(tmp_path / "corpus" / "b_real" / "x.txt", "x\n" * 30)
    (tmp_path / "corpus" / "a_link").symlink_to(tmp_path / "corpus" / "b_real")
    (tmp_path / "corpus" / "c_link").symlink_to(tmp_path / "corpus" / "b_real")
    files, _ = user_text.expand_paths(str(tmp_path / "corpus"))
    assert [os.path.relpath(f, tmp_path / "corpus") for f in files] == ["a_link/x.txt"]
