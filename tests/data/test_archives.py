"""Archives as corpora ship them (WikiText-103's zip, a Kaggle `archive.zip`, Project Gutenberg's
`.zip` books, IMDB's `aclImdb_v1.tar.gz`), made by the real `zip` and `tar` programs and by
Python's zipfile (as Windows and macOS zips hold them: `__MACOSX/` forks, bzip2 and LZMA
members): each is read exactly as the folder it holds, the same documents and the same split;
records and compressed files inside too. Zips that are documents (`.docx`, `.epub`) stay
binary; damaged and encrypted archives are one-line errors naming the file."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile

import pytest

from llp_jax.data import DataError, load_corpus, user_text
from tests.data.test_text_formats import DOCS, FILES
from tests.helpers import REPO
from tests.helpers.cli import PYTHON, assert_one_line_error, cli_env, run_cli
from tests.reliability.conftest import tiny_args

_HAVE_ZIP = shutil.which("zip") is not None
_HAVE_ZSTD = shutil.which("zstd") is not None


def _books(root) -> str:
    """A folder of 25 books in subfolders (whole-document split), a hidden file, an empty one and
    a binary one (both skipped by a walk): what an archive of it must read the same."""
    books = root / "books"
    for i, doc in enumerate(DOCS[:25]):
        path = books / f"shelf{i % 3}" / f"book{i:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc * 3)
    (books / ".notes.txt").write_text("not part of the corpus\n")
    (books / "empty.txt").write_text("")
    (books / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100))
    return str(books)


def _run(*command, cwd):
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)


def _zip_with_python(books: str, out: str, method=zipfile.ZIP_DEFLATED, macos=False) -> None:
    """As Python (and Windows Explorer) zip a folder; `macos`: Finder's __MACOSX/ '._' forks."""
    root = os.path.dirname(books)
    with zipfile.ZipFile(out, "w", method) as archive:
        for folder, dirs, names in sorted(os.walk(books)):
            dirs.sort()
            archive.write(folder, os.path.relpath(folder, root))
            for name in sorted(names):
                path = os.path.join(folder, name)
                archive.write(path, os.path.relpath(path, root))
                if macos:
                    fork = os.path.join("__MACOSX", os.path.relpath(folder, root), "._" + name)
                    archive.writestr(fork, b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X" + bytes(40))


ARCHIVERS = {
    "zip -r": (".zip", lambda b, o: _run("zip", "-qr", o, "books", cwd=os.path.dirname(b))),
    "tar -czf": (".tar.gz", lambda b, o: _run("tar", "-czf", o, "books", cwd=os.path.dirname(b))),
    "tar -cjf": (".tbz2", lambda b, o: _run("tar", "-cjf", o, "books", cwd=os.path.dirname(b))),
    "tar -cJf": (".tar.xz", lambda b, o: _run("tar", "-cJf", o, "books", cwd=os.path.dirname(b))),
    "tar --zstd": (
        ".tar.zst",
        lambda b, o: _run("tar", "--zstd", "-cf", o, "books", cwd=os.path.dirname(b)),
    ),
    "tar -cf ./": (".tar", lambda b, o: _run("tar", "-cf", o, ".", cwd=b)),  # members ./shelf0/..
    "python deflate": (".zip", _zip_with_python),
    "python bzip2": (".zip", lambda b, o: _zip_with_python(b, o, zipfile.ZIP_BZIP2)),
    "python lzma, macOS forks": (
        ".zip",
        lambda b, o: _zip_with_python(b, o, zipfile.ZIP_LZMA, macos=True),
    ),
    "shutil gztar": (
        ".tar.gz",
        lambda b, o: shutil.make_archive(o.removesuffix(".tar.gz"), "gztar", b),
    ),
}


@pytest.mark.parametrize("archiver", sorted(ARCHIVERS))
def test_an_archive_is_read_as_the_folder_it_holds(archiver, tmp_path, capsys):
    """`--config.data.corpus=books.zip` was 'looks binary (contains NUL bytes)': the user had to
    unpack it. Now it is the folder it holds: the same documents in the same order, so the same
    whole-document split, the same files skipped, said in one line."""
    if archiver.startswith("zip") and not _HAVE_ZIP or "zstd" in archiver and not _HAVE_ZSTD:
        pytest.skip(f"no {archiver.split()[0]} program here")
    books = _books(tmp_path)
    suffix, make = ARCHIVERS[archiver]
    out = str(tmp_path / f"books{suffix}")
    make(books, out)
    folder = load_corpus(books)
    capsys.readouterr()
    archived = load_corpus(out)
    assert archived.documents == folder.documents
    assert archived.splits == folder.splits
    assert archived.description == folder.description
    assert "25 documents, whole-document split" in archived.description
    assert "2 non-text file(s) skipped" in archived.description
    printed = capsys.readouterr().out
    assert "read 1 archive(s) as the folders they hold" in printed and out in printed
    assert "skipped 2 file(s) that are not text" in printed  # the empty file and the picture


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize(
    "name",
    [
        "reviews.csv",
        "c4-train.00000-of-01024.json.gz",
        "00.jsonl.zst",
        "train-00000-of-00001.parquet",
        "array.json",
    ],
)
def test_records_inside_an_archive_are_read_as_records(name, tmp_path):
    """A Kaggle download is `archive.zip` around a CSV; C4 and the Pile's shards are compressed
    JSON Lines: in an archive (and an archive in an archive) each is the same documents."""
    raw, field = FILES["excel.csv" if name == "reviews.csv" else name], "text"
    alone = tmp_path / name
    alone.write_bytes(raw)
    expected = user_text.read_documents(str(alone), field)
    kaggle = tmp_path / "archive.zip"
    kaggle.write_bytes(_zip({f"data/{name}": raw}))
    assert user_text.read_documents(str(kaggle), field) == expected
    nested = tmp_path / "bundle.zip"
    nested.write_bytes(_zip({"inner.tar.gz": _tar_gz({name: raw})}))
    assert user_text.read_documents(str(nested), field) == expected


def test_zips_that_are_documents_or_models_stay_binary(tmp_path, capsys):
    """A .docx, an .epub, a torch .pt and an .npz are zips too, but not folders of text: a walk
    skips them as binary (their XML is not prose), and named they are the one-line error."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "notes.txt").write_text(DOCS[0])
    docx = _zip(
        {
            "[Content_Types].xml": b"<?xml version='1.0'?><Types/>",
            "word/document.xml": b"<w:document><w:t>Hello</w:t></w:document>",
        }
    )
    for name in ("report.docx", "book.epub", "model.pt", "arrays.npz"):
        (root / name).write_bytes(docx)
    docs, skipped = user_text.read_spec_documents(str(root))
    assert docs == [DOCS[0]] and len(skipped) == 4
    assert "archive" not in capsys.readouterr().out
    with pytest.raises(DataError, match="is an Office document .*, not text; get its text"):
        load_corpus(str(root / "report.docx"))  # not read as a folder of XML


def test_an_archive_beside_its_unpacked_folder_is_read_once(tmp_path, capsys):
    """`unzip books.zip` leaves books.zip beside books/: a walk of their folder met every book
    twice, so validation documents were copies of training ones. A text both in an archive and
    outside it is read once, said in a line; equal texts inside one archive (two identical
    reviews) or outside any stay, as a folder keeps them."""
    books = _books(tmp_path / "downloads")
    (tmp_path / "downloads" / "books" / "shelf0" / "again.txt").write_text(DOCS[0] * 3)
    alone = load_corpus(books)
    _zip_with_python(books, str(tmp_path / "downloads" / "books.zip"))
    capsys.readouterr()
    both = load_corpus(str(tmp_path / "downloads"))
    assert both.documents == alone.documents  # the archive's copies left out; again.txt kept
    assert (
        "read 26 text(s) once that are both in an archive and outside it" in capsys.readouterr().out
    )
    (tmp_path / "downloads" / "books.zip").rename(tmp_path / "downloads" / "a_first.zip")
    assert load_corpus(str(tmp_path / "downloads")).documents == alone.documents  # archive first


def _encrypted_zip(tmp_path) -> bytes:
    if _HAVE_ZIP:
        (tmp_path / "secret.txt").write_text(DOCS[1])
        _run("zip", "-q", "-P", "pw", "locked.zip", "secret.txt", cwd=tmp_path)
        return (tmp_path / "locked.zip").read_bytes()
    raw = bytearray(_zip({"secret.txt": DOCS[1].encode()}))  # the encryption bit, set by hand
    raw[6] |= 1
    central = raw.index(b"PK\x01\x02")
    raw[central + 8] |= 1
    return bytes(raw)


def test_damaged_and_encrypted_archives_are_one_line_errors(tmp_path):
    whole = _zip({f"book{i}.txt": d.encode() for i, d in enumerate(DOCS[:5])})
    cases = {
        "cut.zip": (whole[: len(whole) // 2], "is a damaged zip archive"),
        "cut.tar.gz": (
            gzip.compress(gzip.decompress(_tar_gz({"a.txt": DOCS[0].encode() * 50}))[:700]),
            "is a damaged tar archive",
        ),
        "locked.zip": (_encrypted_zip(tmp_path), "secret.txt is encrypted"),
        "pictures.zip": (_zip({"a.jpg": b"\xff\xd8\x00" * 9}), "holds no text files"),
        "empty.zip": (_zip({}), "holds no text files"),
    }
    for name, (raw, fragment) in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(DataError, match=fragment) as e:
            load_corpus(str(path))
        assert name in str(e.value) and "\n" not in str(e.value), name


def test_the_clis_train_on_an_archive_and_evaluate_one_from_a_pipe(tmp_path, corpus_file):
    """Through the real programs: train on a .zip named as the corpus, then `cat x.tar.gz |
    evaluate --text=-` scores the same text as its unpacked file."""
    text = open(corpus_file, encoding="utf-8").read()
    book = tmp_path / "book.zip"
    book.write_bytes(_zip({"austen/persuasion.txt": text.encode()}))
    env = cli_env(str(tmp_path / "xla"))
    workdir = tmp_path / "run"
    result = run_cli("train", *tiny_args(workdir, book, steps=2), env=env)
    assert result.rc == 0, str(result)
    assert "read 1 archive(s) as the folders they hold (1 file(s) in them)" in result.stdout
    (tmp_path / "piped.tar.gz").write_bytes(_tar_gz({"persuasion.txt": text.encode()[:20000]}))
    (tmp_path / "plain.txt").write_bytes(text.encode()[:20000])
    rows = {}
    for name in ("plain.txt", "piped.tar.gz"):
        with open(tmp_path / name, "rb") as stdin:
            proc = subprocess.run(
                [PYTHON, "-m", "experiments.evaluate", f"--workdir={workdir}", "--text=-",
                 "--protocols=standard"],
                stdin=stdin, capture_output=True, env=env, cwd=REPO, timeout=600,
            )  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode()
        rows[name] = next(line for line in proc.stdout.decode().splitlines()
                          if line.startswith("| standard |"))  # fmt: skip
    assert rows["piped.tar.gz"] == rows["plain.txt"]
    bad = tmp_path / "cut.zip"
    bad.write_bytes(book.read_bytes()[:300])
    assert_one_line_error(
        run_cli("evaluate", f"--workdir={workdir}", f"--text={bad}", env=env),
        "cut.zip is a damaged zip archive",
    )
    json.loads((workdir / "eval_text.json").read_text())  # the good runs wrote their table
