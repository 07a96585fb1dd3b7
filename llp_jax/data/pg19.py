"""PG-19 from a local copy as a tfds builder (`llp_pg19`), one example per book, without TensorFlow.

The catalog's `pg19` builder reads `gs://deepmind-gutenberg` through TensorFlow's file system and
has no manual option. This builder reads the same layout from a folder, e.g. after
`gsutil -m cp -r gs://deepmind-gutenberg/{train,validation,test,metadata.csv} DIR`:

  DIR/train/<book_id>.txt, DIR/validation/<book_id>.txt, DIR/test/<book_id>.txt
  DIR/metadata.csv  (optional: book_id,title,publication_date,link; no header)

Its features and text are the catalog builder's (`book_text` stripped of surrounding whitespace,
`book_id`, `book_title`, `publication_date`, `book_link`), so `tfds:pg19` and the catalog's
`tfds-catalog:pg19` give the same token streams. Books are ordered by id, not shuffled.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import tensorflow_datasets as tfds

from llp_jax.data import builder_utils
from llp_jax.data.corpus import DataError

_SPLITS = ("train", "validation", "test")


def read_metadata(path: str) -> dict[int, tuple[str, str, str]]:
    """book_id -> (title, publication_date, link) from PG-19's metadata.csv.

    Titles may contain commas (the catalog builder's naive `split(',')` mangles them); the date
    and link are always the last two fields, so everything between them and the id is the title.
    A header row, if any, is skipped.
    """
    out = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.reader(f):
            if len(row) < 4 or not row[0].strip().isdigit():
                continue
            out[int(row[0])] = (",".join(row[1:-2]), row[-2], row[-1])
    return out


def book_files(folder: str) -> list[tuple[int, str]]:
    """(book_id, path) of every `<id>.txt` in `folder`, sorted by id."""
    books = []
    for name in os.listdir(folder):
        stem, ext = os.path.splitext(name)
        if ext == ".txt" and stem.isdigit():
            books.append((int(stem), os.path.join(folder, name)))
    return sorted(books)


class Pg19(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """PG-19 books (Rae et al. 2019) from a manual folder in the standard layout."""

    name = "llp_pg19"
    VERSION = tfds.core.Version("0.1.1")  # The catalog builder's version: same examples.
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Copy PG-19 (gsutil -m cp -r gs://deepmind-gutenberg/* DIR) so that DIR holds train/, "
        "validation/ and test/ folders of <book_id>.txt files and, optionally, metadata.csv."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="PG-19: Project Gutenberg books published before 1919, one per example.",
            features=tfds.features.FeaturesDict(
                {
                    "book_text": tfds.features.Text(),
                    "book_id": np.int32,
                    "book_title": np.str_,
                    "publication_date": np.str_,
                    "book_link": np.str_,
                }
            ),
            homepage="https://github.com/deepmind/pg19",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        root = builder_utils.manual_dir_or_none(dl_manager)
        missing = [s for s in _SPLITS if not root or not os.path.isdir(os.path.join(root, s))]
        if missing:
            where = f"{root} lacks {', '.join(s + '/' for s in missing)}" if root else "none given"
            hint = builder_utils.offline_hint(
                "tfds:pg19",
                "train/, validation/ and test/ folders of <book_id>.txt "
                "(gsutil -m cp -r gs://deepmind-gutenberg/* DIR)",
            )
            raise DataError(
                f"PG-19 cannot be downloaded without TensorFlow (manual folder: {where}); {hint}; "
                f"or use corpus 'tfds-catalog:pg19' with TensorFlow: {builder_utils.TF_INSTALL}."
            )
        meta_path = os.path.join(root, "metadata.csv")
        metadata = read_metadata(meta_path) if os.path.isfile(meta_path) else {}
        return {s: self._generate_examples(os.path.join(root, s), metadata) for s in _SPLITS}

    def _generate_examples(self, folder: str, metadata: dict):
        for book_id, path in book_files(folder):
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", errors="replace").strip()
            title, date, link = metadata.get(book_id, ("", "", ""))
            yield (
                book_id,
                {
                    "book_text": text,
                    "book_id": book_id,
                    "book_title": title,
                    "publication_date": date,
                    "book_link": link,
                },
            )
