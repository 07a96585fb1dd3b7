"""Text corpora: the embedded Austen novels (checksummed, split by whole novel) and user text files.

A `Corpus` is three plain strings (train / validation / test) plus their whitespace word counts, so
a model's per-token loss can be turned into word-level perplexity whatever the tokenizer.

Every problem with the input is raised as a one-line `DataError` that says what is wrong and how to
fix it, because these errors are what a user sees first when pointing `--config.data.corpus` at
their own files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import logging
import lzma
import os
import re
from collections.abc import Mapping, Sequence

from llp_jax.errors import LLPError

SPLITS = ("train", "validation", "test")

AUSTEN_SHA256 = "1f48a6d7751aa60776b8aacf34d3b6898c46f4ee0fd103d733dd04f45e761841"
# 1-based inclusive line ranges of the decompressed text (corpora/PROVENANCE.md); None = to the end.
AUSTEN_NOVELS: dict[str, tuple[int, int | None]] = {
    "Emma": (1, 16235),
    "Mansfield Park": (16236, 31584),
    "Northanger Abbey": (31585, 39440),
    "Persuasion": (39441, 47768),
    "Pride and Prejudice": (47769, 60798),
    "Sense and Sensibility": (60799, None),
}
# Whole held-out novels, so no paragraph of an evaluation split is ever seen in training.
AUSTEN_SPLIT_NOVELS: dict[str, tuple[str, ...]] = {
    "train": ("Emma", "Mansfield Park", "Pride and Prejudice", "Sense and Sensibility"),
    "validation": ("Persuasion",),
    "test": ("Northanger Abbey",),
}

# User corpora: with at least this many files, whole documents are held out (see load_text_corpus).
MIN_DOCUMENTS_FOR_DOCUMENT_SPLIT = 20

_log = logging.getLogger(__name__)
_SURROGATE_RE = re.compile("[\udc80-\udcff]")


class DataError(LLPError, ValueError):
    """Bad input data; the message is one line naming the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A text corpus split into train / validation / test.

    Attributes:
      name: short name for logs (e.g. 'austen' or the file name).
      splits: split name ('train', 'validation', 'test') -> text.
      description: how the splits were made, for logs and reports.
    """

    name: str
    splits: Mapping[str, str]
    description: str = ""

    @property
    def words(self) -> dict[str, int]:
        """Whitespace-separated word count per split (the denominator of word-level perplexity)."""
        return {split: count_words(text) for split, text in self.splits.items()}


def count_words(text: str) -> int:
    """Counts whitespace-separated words, the convention of word-level perplexity on books."""
    return len(text.split())


def default_austen_path() -> str:
    """Path of the embedded `austen_novels.txt.xz` shipped as package data."""
    return str(importlib.resources.files("llp_jax.data") / "corpora" / "austen_novels.txt.xz")


def load_austen(path: str | os.PathLike | None = None, *, sha256: str = AUSTEN_SHA256) -> Corpus:
    """Loads the embedded Austen corpus, verifies its checksum and splits it by whole novels.

    Args:
      path: the `.xz` file; default: the copy shipped inside the package.
      sha256: expected sha256 of the decompressed text (tests pass a different one).

    Returns:
      Corpus with train = Emma, Mansfield Park, Pride and Prejudice, Sense and Sensibility;
      validation = Persuasion; test = Northanger Abbey.

    Raises:
      DataError: the file is missing, is not valid xz, or its content does not match the checksum.
    """
    path = os.fspath(path or default_austen_path())
    if not os.path.isfile(path):
        raise DataError(
            f"Austen corpus file {path} not found; reinstall llp_jax or pass a valid path."
        )
    try:
        with lzma.open(path, "rb") as f:
            raw = f.read()
    except (lzma.LZMAError, EOFError) as e:
        raise DataError(
            f"{path} is not a valid .xz file ({e}); restore it from the llp_jax package."
        )
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise DataError(
            f"Checksum mismatch for {path}: sha256 {digest} != expected {sha256}; the file is "
            "corrupted, restore it from the llp_jax package (see corpora/PROVENANCE.md)."
        )
    lines = raw.decode("utf-8").split("\n")
    novels = {name: "\n".join(lines[a - 1 : b]) for name, (a, b) in AUSTEN_NOVELS.items()}
    splits = {s: "\n".join(novels[n] for n in names) for s, names in AUSTEN_SPLIT_NOVELS.items()}
    desc = "; ".join(f"{s}: {', '.join(n)}" for s, n in AUSTEN_SPLIT_NOVELS.items())
    return Corpus(
        name="austen", splits=splits, description=f"Austen novels by whole novel ({desc})"
    )


def read_text_file(path: str | os.PathLike) -> str:
    """Reads a UTF-8 text file for training, rejecting inputs that cannot be text.

    Invalid UTF-8 is not fatal: each undecodable byte becomes U+FFFD and the count is logged
    (a few stray Latin-1 bytes in a scraped book should not stop a run). A UTF-8 BOM is dropped and
    Windows/old-Mac newlines become '\\n', so splits and tokenizers see one newline convention.

    Args:
      path: a text file.

    Returns:
      The decoded text.

    Raises:
      DataError: the path is missing or not a file, the file is empty, or it holds NUL bytes
        (a binary file such as a .zip or a model checkpoint).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"Corpus path {path} does not exist; pass an existing .txt file or folder.")
    if not os.path.isfile(path):
        raise DataError(f"Corpus path {path} is not a regular file; pass a .txt file or a folder.")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise DataError(
            f"Corpus file {path} is empty; remove it from the corpus or add text to it."
        )
    if b"\x00" in raw:
        raise DataError(
            f"Corpus file {path} looks binary (contains NUL bytes); pass a plain UTF-8 text file."
        )
    # surrogateescape maps each undecodable byte to exactly one lone surrogate, so we can count them.
    text = raw.decode("utf-8", errors="surrogateescape")
    text, num_bad = _SURROGATE_RE.subn("\ufffd", text)
    if num_bad:
        _log.warning("%s: replaced %d invalid UTF-8 bytes with U+FFFD.", path, num_bad)
        print(f"[llp_jax.data] {path}: replaced {num_bad} invalid UTF-8 bytes with U+FFFD.")
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def expand_paths(spec: str | Sequence[str]) -> list[str]:
    """Turns 'a.txt,dir' (or a list) into files: folders give all their *.txt, sorted by name.

    Raises:
      DataError: a path is missing, or a folder holds no .txt file.
    """
    parts = spec.split(",") if isinstance(spec, str) else [os.fspath(p) for p in spec]
    parts = [os.path.expanduser(p.strip()) for p in parts if p.strip()]
    if not parts:
        raise DataError(
            "Empty corpus specification; pass 'austen' or paths to .txt files or folders."
        )
    files = []
    for part in parts:
        if os.path.isdir(part):
            found = sorted(
                os.path.join(part, n)
                for n in os.listdir(part)
                if n.endswith(".txt") and os.path.isfile(os.path.join(part, n))
            )
            if not found:
                raise DataError(
                    f"Corpus folder {part} holds no *.txt files; add some or pass the files."
                )
            files.extend(found)
        elif os.path.exists(part):
            files.append(part)
        else:
            raise DataError(
                f"Corpus path {part} does not exist; pass an existing .txt file or folder."
            )
    return files


def _tail_cut(text: str, fraction: float, lo: int) -> int:
    """Character offset near `fraction` of `text`, moved forward to a line start if one is near."""
    cut = max(lo, min(len(text), round(len(text) * fraction)))
    newline = text.find("\n", cut)
    # Snap to a line boundary unless that would swallow more than 1% of the text.
    if newline != -1 and newline - cut <= max(1, len(text) // 100):
        return newline + 1
    return cut


def load_text_corpus(
    spec: str | Sequence[str], *, val_fraction: float = 0.05, test_fraction: float = 0.05
) -> Corpus:
    """Loads user text files and splits them deterministically into train / validation / test.

    The split rule, chosen so that evaluation text is never seen in training:
      * With at least `MIN_DOCUMENTS_FOR_DOCUMENT_SPLIT` (20) files: whole documents are held out.
        Files are taken in the order given (folders sorted by name); the file at position i goes to
        validation if i % 20 == 18, to test if i % 20 == 19, else to train (5% / 5% / 90%).
      * Otherwise (one file, or a few): the files are joined with newlines and cut at the tail:
        the first (1 - val - test) of the characters is train, the next `val_fraction` validation,
        the last `test_fraction` test, each cut moved to the next line start when one is close.

    Args:
      spec: a path or comma-separated paths (files or folders of *.txt), or a list of them.
      val_fraction: tail fraction for validation (tail split only).
      test_fraction: tail fraction for test (tail split only).

    Returns:
      The Corpus; its name is the single file's or folder's base name, or 'custom'.

    Raises:
      DataError: see `expand_paths` and `read_text_file`.
    """
    files = expand_paths(spec)
    docs = [read_text_file(f) for f in files]
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    name = "custom"
    if len(parts) == 1:
        name = os.path.basename(os.path.normpath(os.fspath(parts[0]).strip()))
    if len(docs) >= MIN_DOCUMENTS_FOR_DOCUMENT_SPLIT:
        period = MIN_DOCUMENTS_FOR_DOCUMENT_SPLIT
        which = {
            i: "validation"
            if i % period == period - 2
            else "test"
            if i % period == period - 1
            else "train"
            for i in range(len(docs))
        }
        splits = {s: "\n".join(d for i, d in enumerate(docs) if which[i] == s) for s in SPLITS}
        desc = f"{len(docs)} documents, whole-document split (i % {period}: 18 -> val, 19 -> test)"
    else:
        text = "\n".join(d.rstrip("\n") for d in docs)
        a = _tail_cut(text, 1.0 - val_fraction - test_fraction, 1)
        b = _tail_cut(text, 1.0 - test_fraction, a)
        splits = {"train": text[:a], "validation": text[a:b], "test": text[b:]}
        desc = (
            f"{len(docs)} file(s), tail split {1 - val_fraction - test_fraction:.0%} / "
            f"{val_fraction:.0%} / {test_fraction:.0%} of characters"
        )
    return Corpus(name=name, splits=splits, description=desc)


def load_corpus(spec: str | Sequence[str] = "austen") -> Corpus:
    """Loads the named embedded corpus ('austen') or user text files (see `load_text_corpus`)."""
    if isinstance(spec, str) and spec.strip().lower() in ("austen", ""):
        return load_austen()
    return load_text_corpus(spec)
