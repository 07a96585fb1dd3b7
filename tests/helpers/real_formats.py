"""Tiny copies of the real dataset layouts (Wikitext-103, PG-19, enwik8) and their expected streams.

Each writer returns the folder and what the pipeline must read back from it: per split, the
exact byte stream (byte-level tokens) the standard files define.
"""

import zipfile

import pytest

WIKI_FILES = {"train": "wiki.train", "validation": "wiki.valid", "test": "wiki.test"}


def wiki_article(title: str, num_paragraphs: int) -> str:
    """One article in the Wikitext-103 layout: ' = Title = ', sections, ' \\n' blank lines."""
    lines = [" ", f" = {title} = ", " "]
    for p in range(num_paragraphs):
        lines += [f" {title} paragraph {p} : a <unk> word , 1 @,@ 000 and café @-@ 日本 . ", " "]
        if p == 0:  # A heading-looking line inside a paragraph is not a new article.
            lines += [f" {title} text", " = not a title = ", " "]
        lines += [f" = = Section {p} = = ", " ", " = = = Sub = = = ", " ", " More text . ", " "]
    return "\n".join(lines) + "\n"


def wiki_split_text(split: str, num_articles: int) -> tuple[str, list[str]]:
    titles = [f"{split.title()} Article {i}" for i in range(num_articles)]
    return "".join(wiki_article(t, 1 + i % 3) for i, t in enumerate(titles)), titles


@pytest.fixture(scope="session")
def wikitext_dir(tmp_path_factory):
    """(folder, {split: text}, {split: titles}) of a tiny wikitext-103 release (.tokens)."""
    root = tmp_path_factory.mktemp("wikitext") / "wikitext-103"  # Nested, as in the archive.
    root.mkdir()
    texts, titles = {}, {}
    for split, count in (("train", 12), ("validation", 2), ("test", 3)):
        texts[split], titles[split] = wiki_split_text(split, count)
        (root / f"{WIKI_FILES[split]}.tokens").write_bytes(texts[split].encode("utf-8"))
    return root.parent, texts, titles


PG19_BOOKS = {  # split -> {book_id: text}; ids out of order on purpose.
    "train": {
        30: "\ufeffThe Thirtieth Book.\n\nIt was a dark night, said Ann.  \n",
        4: "  \nA book, with leading blanks\r\nand Windows lines.\r\n\n",
        123: "Last training book. Ünïcödé — “quotes”.",
    },
    "validation": {77: "Validation book one.\nTwo lines.\n"},
    "test": {9: "Test book.\n", 10: "Another test book, the last.\n\n\n"},
}
PG19_METADATA = (
    '4,"A Title, With a Comma",1850,http://www.gutenberg.org/ebooks/4\n'
    "30,Plain Title,1901,http://www.gutenberg.org/ebooks/30\n"
    "77,Valid,1800,http://www.gutenberg.org/ebooks/77\n"
)


def pg19_expected(split: str) -> bytes:
    """The stream: books by id, each stripped (as tfds' pg19 does) and followed by a newline."""
    books = PG19_BOOKS[split]
    return "".join(books[i].strip() + "\n" for i in sorted(books)).encode("utf-8")


@pytest.fixture(scope="session")
def pg19_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pg19")
    for split, books in PG19_BOOKS.items():
        (root / split).mkdir()
        for book_id, text in books.items():
            (root / split / f"{book_id}.txt").write_bytes(text.encode("utf-8"))
    (root / "train" / "README.md").write_text("not a book")
    (root / "metadata.csv").write_text(PG19_METADATA)
    return root


ENWIK8_SPLIT_BYTES = (9_000, 500, 500)  # The standard 90M / 5M / 5M, scaled down 10^4 times.
ENWIK8_CHUNK_BYTES = 1_000


def enwik8_bytes() -> bytes:
    """10,000 bytes of Wikipedia-like XML with multi-byte characters and one invalid byte."""
    page = (
        "<page><title>Zürich</title><text>'''Zürich''' is a city. 日本語 [[link]]</text></page>\n"
    )
    data = (page * 200).encode("utf-8")[: sum(ENWIK8_SPLIT_BYTES) - 1] + b"\xff"
    assert len(data) == sum(ENWIK8_SPLIT_BYTES)
    return data


@pytest.fixture
def small_enwik8(monkeypatch):
    """Scales the enwik8 builder's split and chunk sizes to the fixture file."""
    from llp_jax.data import enwik8

    monkeypatch.setattr(enwik8, "SPLIT_BYTES", ENWIK8_SPLIT_BYTES)
    monkeypatch.setattr(enwik8, "CHUNK_BYTES", ENWIK8_CHUNK_BYTES)
    return enwik8


@pytest.fixture(scope="session")
def enwik8_dirs(tmp_path_factory):
    """(folder with `enwik8`, folder with `enwik8.zip`, the bytes)."""
    data = enwik8_bytes()
    plain = tmp_path_factory.mktemp("enwik8_plain")
    (plain / "enwik8").write_bytes(data)
    zipped = tmp_path_factory.mktemp("enwik8_zip")
    with zipfile.ZipFile(zipped / "enwik8.zip", "w") as z:
        z.writestr("enwik8", data)
    return plain, zipped, data


def enwik8_expected(data: bytes) -> dict[str, bytes]:
    a, b, _ = ENWIK8_SPLIT_BYTES
    return {"train": data[:a], "validation": data[a : a + b], "test": data[a + b :]}
