"""A user's own text as a corpus: files, folders (recursive), globs, JSON Lines, Parquet, CSV.

`config.data.corpus` names them: 'notes.txt', 'a.txt,b.md', 'books/' (every text file below it,
whatever its extension), 'docs/**/*.md' (a glob), 'chats.jsonl' (one document per line, its
text in the `config.data.text_field` field; `text_bytes` reads compressed and UTF-16 files,
`records` JSON ones too), 'train-*.parquet' (Hugging Face's shards: one document per row of that column),
'reviews.csv' / '.tsv' (a header row; one document per row of that column), 'books.zip' or
'aclImdb_v1.tar.gz' (`archives`: read as the folder it holds). A
name that exists as given is taken whole, so a file whose name holds a comma still works.
Files met in a folder or a glob that are not text (binary, mostly invalid UTF-8, or empty) are
skipped with a count; a file named explicitly must be text.
Each of these may also be a URL (gs://bucket/books/, s3://..., through fsspec): on a TPU VM or
in Colab the text usually lives in a bucket.

Every problem is a one-line `DataError` that says what is wrong and how to fix it, because these
errors are what a user sees first when pointing `--config.data.corpus` at their own files.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Sequence

from llp_jax import paths
from llp_jax.data import archives, columns, corpus_paths, records, text_bytes
from llp_jax.data.corpus import SPLITS, Corpus, DataError
from llp_jax.data.corpus_paths import STDIN, expand_paths, no_such
from llp_jax.data.records import NoTextField
from llp_jax.data.remote_corpus import read_url
from llp_jax.data.text_bytes import NotText

# With at least this many documents, whole documents are held out (see load_text_corpus).
MIN_DOCUMENTS_FOR_DOCUMENT_SPLIT = 20


def read_text_file(path: str | os.PathLike, *, once: bool = False) -> str:
    """Reads a text file for training (`text_bytes`: decompressed if gzip, bzip2, xz or
    Zstandard; UTF-8, or UTF-16/32 after a byte-order mark), rejecting inputs that cannot be text.

    A few invalid UTF-8 bytes (at most 1% of the file) become U+FFFD, with a logged count. A
    UTF-8 BOM is dropped and Windows/old-Mac newlines become '\\n'.

    `once`: text read a single time (what `experiments.evaluate --text` scores) may also come
    from a stream: '-' (standard input), a pipe (bash's `<(zcat a.gz)` is /dev/fd/63) or a
    character device. A training corpus may not, because a resumed run reads it again.

    Raises:
      DataError: the path is missing, not a file or unreadable; NotText: empty, binary or not
        UTF-8 (what a folder or glob walk skips).
    """
    path = os.fspath(path)
    return text_bytes.decode(path, _read_bytes(path, once))


def _read_bytes(path: str, once: bool) -> bytes:
    """A corpus file's bytes, decompressed; `read_text_file` says which paths may be read."""
    if paths.is_url(path):
        raw = read_url(path)
    elif once and path == STDIN:
        if sys.stdin.isatty():  # typed by hand, or a forgotten pipe: say what it waits for
            print("reading text from standard input; end it with Ctrl-D", file=sys.stderr)
        raw = sys.stdin.buffer.read()
    else:
        if not os.path.exists(path):
            raise no_such(path)
        if not os.path.isfile(path) and not (once and _stream(path)):
            raise _not_a_file(path)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise DataError(
                f"Corpus file {path} cannot be read ({e.strerror}); check it."
            ) from None
    return _content(path, raw)


def _content(path: str, raw: bytes) -> bytes:
    """A file's (or an archive member's) bytes decompressed; NotText if they hold nothing."""
    raw = text_bytes.decompress(path, raw)
    if not raw.strip() and path == STDIN:
        raise DataError("Standard input ('-') holds no text; pipe text into it (cmd | ...).")
    if not raw.strip():
        raise NotText(f"Corpus file {path} is empty; remove it from the corpus or add text.")
    return raw


def read_spec_documents(
    spec: str | Sequence[str], text_field: str = "text", *, once: bool = False
) -> tuple[list[str], list[str]]:
    """The documents of every file a corpus spec names, and the files a folder or glob walk met
    that hold no text (binary or empty: skipped, counted in one printed line; so are record and
    table files without `text_field`, unless no file has it); a file named explicitly must be
    text (`NotText`) and have the field (`NoTextField`). An archive is read as the folder it
    holds (`archives`). `once`: see `read_text_file`."""
    files, found = expand_paths(spec, stdin=once)
    reading = _Reading(text_field)
    for path in files:
        try:
            raw = _read_bytes(path, once)
        except NotText:
            if path not in found:
                raise
            reading.skipped.append(path)
            continue
        reading.add(path, raw, walked=path in found)
    return reading.finish()


def read_documents(path: str, text_field: str = "text", *, once: bool = False) -> list[str]:
    """The documents of one file (`records.documents`): the whole text, one per record of a
    JSON Lines or JSON file, or one per row of a Parquet, CSV or TSV file's `text_field` column;
    an archive's, those of the files in it."""
    reading = _Reading(text_field)
    reading.add(path, _read_bytes(path, once), walked=False)
    return reading.finish()[0]


class _Reading:
    """The documents of a spec's files as they are read, and what was left out on the way: files
    that are not text or lack the text field (of a walk, or in an archive), and the copies of a
    text both in an archive and outside it (an archive unpacked beside itself, which a folder
    walk met twice: validation documents would be copies of training ones)."""

    def __init__(self, text_field: str):
        self.text_field = text_field
        self.docs: list[str] = []
        self.skipped: list[str] = []
        self.fieldless: list[NoTextField] = []
        self.archives: list[str] = []
        self.members = 0
        self.again: list[str] = []
        self._origin: dict[bytes, str] = {}  # content digest -> the archive it came from ('')

    def add(self, path: str, raw: bytes, *, walked: bool, origin: str = "", depth: int = 0):
        """Reads one file's (decompressed) bytes, or an archive member's (`origin`: the
        archive named in the spec): `walked` ones that are not text are skipped."""
        try:
            raw = _content(path, raw) if depth else raw
            archive = archives.kind(path, raw) if depth < archives.MAX_DEPTH else None
            if archive:
                self.archives.append(path)
                for member, data in archives.members(path, raw, archive):
                    self.members += 1
                    self.add(member, data, walked=True, origin=origin or path, depth=depth + 1)
                return
            if columns.is_parquet(raw):
                docs = columns.parquet_documents(path, raw, self.text_field)
            elif columns.is_arrow(path, raw):
                docs = columns.arrow_documents(path, raw, self.text_field)
            else:
                docs = records.documents(path, text_bytes.decode(path, raw), self.text_field)
            first = self._origin.setdefault(hashlib.sha1(raw).digest(), origin)
            if first != origin and (first or origin):
                self.again.append(path)
                return
            self.docs += docs
        except NotText:
            if not walked:
                raise
            self.skipped.append(path)
        except NoTextField as e:
            if not walked:
                raise
            self.fieldless.append(e)

    def finish(self) -> tuple[list[str], list[str]]:
        """(documents, files skipped as not text), what was left out said in a line each."""
        if self.fieldless and not self.docs:
            raise self.fieldless[0]
        if self.archives:
            print(f"[llp_jax.data] read {len(self.archives)} archive(s) as the folders they hold "
                  f"({self.members} file(s) in them), e.g. {self.archives[0]}")  # fmt: skip
        if self.again:
            print(f"[llp_jax.data] read {len(self.again)} text(s) once that are both in an archive "
                  f"and outside it (or in two archives), e.g. {self.again[0]}")  # fmt: skip
        if self.skipped:
            print(f"[llp_jax.data] skipped {len(self.skipped)} file(s) that are not text (binary "
                  f"or empty), e.g. {self.skipped[0]}")  # fmt: skip
        if self.fieldless:
            print(f"[llp_jax.data] skipped {len(self.fieldless)} record or table file(s) without "
                  f"the text field {self.text_field!r}: {self.fieldless[0]}")  # fmt: skip
        return self.docs, self.skipped


def _stream(path: str) -> bool:
    """A pipe or a character device: bytes that can be read, once."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _not_a_file(path: str) -> DataError:
    if _stream(path):
        return DataError(
            f"Corpus path {path} is a pipe or device, which can be read only once, and a training "
            "corpus is read again when the run resumes; save it to a file first (cmd > text.txt)."
        )
    return DataError(f"Corpus path {path} is not a regular file; pass a file or a folder.")


def _tail_cut(text: str, fraction: float, lo: int) -> int:
    """Character offset near `fraction` of `text`, moved forward to a line start if one is near."""
    cut = max(lo, min(len(text), round(len(text) * fraction)))
    newline = text.find("\n", cut)
    # Snap to a line boundary unless that would swallow more than 1% of the text.
    if newline != -1 and newline - cut <= max(1, len(text) // 100):
        return newline + 1
    return cut


def load_text_corpus(
    spec: str | Sequence[str],
    *,
    text_field: str = "text",
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> Corpus:
    """Loads user text and splits it deterministically into train / validation / test documents.

    The split rule, chosen so that evaluation text is never seen in training:
      * With at least 20 documents (files, or JSON Lines records): whole documents are held out.
        Documents are taken in order (folders and globs sorted by name); document i goes to
        validation if i % 20 == 18, to test if i % 20 == 19, else to train (5% / 5% / 90%).
      * Otherwise: the documents are joined with newlines and cut at the tail: the first
        (1 - val - test) of the characters is train, the next `val_fraction` validation, the
        last `test_fraction` test, each cut moved to the next line start when one is close.

    Raises:
      DataError: see `expand_paths`, `read_text_file`; or no text file at all.
    """
    if not (val_fraction > 0 and test_fraction > 0 and val_fraction + test_fraction < 1):
        raise DataError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must "
                        "each be > 0, with a sum < 1")  # fmt: skip
    docs, skipped = read_spec_documents(spec, text_field)
    if not docs:
        raise DataError(
            f"Corpus {spec!r} holds no text files ({len(skipped)} skipped: binary or empty)."
        )
    parts = corpus_paths.parts(spec)
    name = os.path.basename(os.path.normpath(parts[0])) if len(parts) == 1 else "custom"
    note = f"; {len(skipped)} non-text file(s) skipped" if skipped else ""
    if len(docs) >= MIN_DOCUMENTS_FOR_DOCUMENT_SPLIT:
        period = MIN_DOCUMENTS_FOR_DOCUMENT_SPLIT
        which = lambda i: ("validation" if i % period == period - 2 else "test"  # noqa: E731
                           if i % period == period - 1 else "train")  # fmt: skip
        documents = {s: [d for i, d in enumerate(docs) if which(i) == s] for s in SPLITS}
        desc = f"{len(docs)} documents, whole-document split (i % {period}: 18 -> val, 19 -> test)"
    else:
        text = "\n".join(d.rstrip("\n") for d in docs)
        a = _tail_cut(text, 1.0 - val_fraction - test_fraction, 1)
        b = _tail_cut(text, 1.0 - test_fraction, a)
        documents = {"train": [text[:a]], "validation": [text[a:b]], "test": [text[b:]]}
        desc = (
            f"{len(docs)} document(s), tail split {1 - val_fraction - test_fraction:.0%} / "
            f"{val_fraction:.0%} / {test_fraction:.0%} of characters"
        )
    return Corpus.from_documents(name, documents, desc + note)
