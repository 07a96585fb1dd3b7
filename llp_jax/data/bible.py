"""The embedded World English Bible: a second domain, split by whole book.

Beside the Austen novels (19th-century fiction), the World English Bible (public domain; Debian's
`sword-text-web`, extracted by tools/extract_web_bible.py, see corpora/PROVENANCE.md) is prose
and verse of another register, vocabulary and period: a held-out domain on which a model trained
on Austen is evaluated (`data.corpus='web_bible'` for evaluation; `--text` also works). Split by
whole book: train = the Old Testament and the Deuterocanon (with the translators' preface),
validation = the four Gospels, test = the rest of the New Testament.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import lzma
import os

from llp_jax.data.corpus import Corpus, DataError

WEB_SHA256 = "4fc1aff26ae7be40c54853bc9d035045c63c86ddd4dc2515823c49b67b0415f1"
BOOK_MARK = "#### "  # a line `#### <OSIS id>` opens each book
GOSPELS = ("Matt", "Mark", "Luke", "John")
NEW_TESTAMENT_FIRST = "Matt"


def default_web_path() -> str:
    return str(importlib.resources.files("llp_jax.data") / "corpora" / "web_bible.txt.xz")


def books(text: str) -> dict[str, str]:
    """OSIS book id -> its text (without the marker line); the preface as 'Preface'."""
    out, name, lines = {}, "Preface", []
    for line in text.split("\n"):
        if line.startswith(BOOK_MARK):
            out[name] = "\n".join(lines).strip("\n")
            name, lines = line[len(BOOK_MARK) :].strip(), []
        else:
            lines.append(line)
    out[name] = "\n".join(lines).strip("\n")
    return out


def load_web_bible(path: str | os.PathLike | None = None, *, sha256: str = WEB_SHA256) -> Corpus:
    """Loads the embedded World English Bible, checks its checksum and splits it by book.

    Raises:
      DataError: the file is missing, not valid xz, or does not match the checksum (one line).
    """
    path = os.fspath(path or default_web_path())
    if not os.path.isfile(path):
        raise DataError(f"World English Bible file {path} not found; reinstall llp_jax.")
    try:
        with lzma.open(path, "rb") as f:
            raw = f.read()
    except (lzma.LZMAError, EOFError) as e:
        raise DataError(f"{path} is not a valid .xz file ({e}); restore it from the package.")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise DataError(
            f"Checksum mismatch for {path}: sha256 {digest} != expected {sha256}; restore it from "
            "the llp_jax package (see corpora/PROVENANCE.md)."
        )
    by_book = books(raw.decode("utf-8"))
    names = list(by_book)
    nt = names.index(NEW_TESTAMENT_FIRST)
    split_books = {
        "train": names[:nt],
        "validation": [b for b in names[nt:] if b in GOSPELS],
        "test": [b for b in names[nt:] if b not in GOSPELS],
    }
    documents = {s: [by_book[b] for b in bs] for s, bs in split_books.items()}
    desc = (f"World English Bible by whole book (train: Old Testament + Deuterocanon, "
            f"{len(split_books['train']) - 1} books and the preface; validation: the Gospels; test: Acts-Revelation)")  # fmt: skip
    return Corpus.from_documents("web_bible", documents, desc)
