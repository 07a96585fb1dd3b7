"""Text corpora: what a `Corpus` is, and the embedded Austen novels (checksummed, split by whole
novel). A user's own files are read by user_text.py.

A `Corpus` holds each split's documents (so that a tokenizer can mark where one ends), the
split's plain text, and whitespace word counts, so a model's per-token loss can be turned into
word-level perplexity whatever the tokenizer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import lzma
import os
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


class DataError(LLPError, ValueError):
    """Bad input data; the message is one line naming the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A text corpus split into train / validation / test.

    Attributes:
      name: short name for logs (e.g. 'austen' or the file name).
      splits: split name ('train', 'validation', 'test') -> text (its documents joined with
        newlines).
      description: how the splits were made, for logs and reports.
      documents: split -> its documents, where the corpus has them (None: each split's text is
        one document).
    """

    name: str
    splits: Mapping[str, str]
    description: str = ""
    documents: Mapping[str, Sequence[str]] | None = None

    @classmethod
    def from_documents(
        cls, name: str, documents: Mapping[str, Sequence[str]], description: str = ""
    ) -> Corpus:
        splits = {s: "\n".join(docs) for s, docs in documents.items()}
        return cls(name, splits, description, {s: list(d) for s, d in documents.items()})

    def split_documents(self, split: str) -> Sequence[str]:
        return self.documents[split] if self.documents is not None else [self.splits[split]]

    @property
    def words(self) -> dict[str, int]:
        """Whitespace-separated word count per split (the denominator of word-level perplexity)."""
        return {split: count_words(text) for split, text in self.splits.items()}


def count_words(text: str, *, chunk: int = 1 << 20) -> int:
    """Counts whitespace-separated words (`len(text.split())`), the convention of word-level
    perplexity on books, a chunk of characters at a time: split whole, a 150 MB corpus held
    26 million word strings at once (1.4 GB). A word cut by a chunk's end is counted once."""
    words, joined = 0, False  # joined: the previous chunk ended inside a word
    for start in range(0, len(text), chunk):
        part = text[start : start + chunk]
        words += len(part.split()) - (joined and not part[0].isspace())
        joined = not part[-1].isspace()
    return words


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
    documents = {s: [novels[n] for n in names] for s, names in AUSTEN_SPLIT_NOVELS.items()}
    desc = "; ".join(f"{s}: {', '.join(n)}" for s, n in AUSTEN_SPLIT_NOVELS.items())
    return Corpus.from_documents("austen", documents, f"Austen novels by whole novel ({desc})")
