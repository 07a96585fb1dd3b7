"""enwik8 as a tfds builder (`llp_enwik8`): the standard 90M / 5M / 5M byte split.

enwik8 is the first 10^8 bytes of an English Wikipedia XML dump (Hutter Prize). The standard
split (Transformer-XL, Perceiver AR, the paper's code) is bytes [0, 90M) train, [90M, 95M)
validation, [95M, 100M) test, modelled byte by byte. Each split is stored as consecutive
`CHUNK_BYTES` pieces (examples `{'text': bytes, 'offset': int64}`, in order); the pipeline
concatenates them and uses the bytes themselves as token ids, so a cut through a multi-byte
UTF-8 character changes nothing.

The manual folder may hold `enwik8` or `enwik8.zip`; otherwise the archive is downloaded.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import tensorflow_datasets as tfds

from llp_jax.data import builder_utils
from llp_jax.data.corpus import DataError

URL = "http://mattmahoney.net/dc/enwik8.zip"
# (train, validation, test) bytes; the file must be exactly their sum. Tests scale them down.
SPLIT_BYTES = (90_000_000, 5_000_000, 5_000_000)
CHUNK_BYTES = 1 << 20  # 1 MiB per example: ~100 records, cheap to read back in order.
_SPLITS = ("train", "validation", "test")


class Enwik8(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """enwik8 in consecutive byte chunks per split."""

    name = "llp_enwik8"
    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put enwik8 (or enwik8.zip) from mattmahoney.net/dc/ in DIR."

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="enwik8: the first 1e8 bytes of English Wikipedia, split 90M/5M/5M.",
            features=tfds.features.FeaturesDict({"text": tfds.features.Text(), "offset": np.int64}),
            homepage="http://mattmahoney.net/dc/textdata.html",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        root = builder_utils.manual_dir_or_none(dl_manager)
        if root is None:  # Without a manual folder, download.
            hint = builder_utils.offline_hint("tfds:enwik8", "enwik8 or enwik8.zip")
            path = builder_utils.download(URL, os.fspath(dl_manager.download_dir), hint=hint)
        else:
            path = builder_utils.find_file(root, ["enwik8", "enwik8.zip"])
            if path is None:
                raise DataError(
                    f"No enwik8 or enwik8.zip under {root}; pass the folder holding it."
                )
        data = _read_enwik8(path)
        if len(data) != sum(SPLIT_BYTES):
            raise DataError(
                f"{path} has {len(data):,} bytes, not the {sum(SPLIT_BYTES):,} of enwik8; "
                "pass the original file from http://mattmahoney.net/dc/enwik8.zip."
            )
        bounds = np.cumsum((0, *SPLIT_BYTES))
        return {
            split: self._generate_examples(data, int(bounds[i]), int(bounds[i + 1]))
            for i, split in enumerate(_SPLITS)
        }

    def _generate_examples(self, data: bytes, start: int, stop: int):
        for i, offset in enumerate(range(start, stop, CHUNK_BYTES)):
            yield i, {"text": data[offset : min(offset + CHUNK_BYTES, stop)], "offset": offset}


def _read_enwik8(path: str) -> bytes:
    """The bytes of `enwik8`, or of the `enwik8` member of `enwik8.zip`."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            return f.read()
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if os.path.basename(n) == "enwik8"]
        if not names:
            raise DataError(f"{path} holds no 'enwik8' file; pass the original enwik8.zip.")
        return z.read(names[0])
