"""tfds datasets behind `config.data.corpus = 'tfds:...'`: names, preparation, documents.

'tfds:wikitext103' (or 'tfds:wikitext103/raw'), 'tfds:pg19', 'tfds:enwik8' - llp_jax's own
    builders (wikitext.py, pg19.py, enwik8.py): a manual folder or a download, no TensorFlow;
'tfds-catalog:NAME' - any catalog dataset with a text feature, e.g. 'tfds-catalog:pg19'.
    Building one usually needs TensorFlow (the optional extra `pip install 'llp_jax[tf]'`);
    once prepared as ArrayRecord in `data_dir` it is read without TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import tensorflow_datasets as tfds

from llp_jax.data import builder_utils
from llp_jax.data.config import STREAM_DATASETS
from llp_jax.data.corpus import DataError
from llp_jax.data.enwik8 import Enwik8
from llp_jax.data.pg19 import Pg19
from llp_jax.data.wikitext import Wikitext103

TFDS_PREFIX, CATALOG_PREFIX = "tfds:", "tfds-catalog:"
BUILDERS = {"wikitext103": Wikitext103, "pg19": Pg19, "enwik8": Enwik8}
TEXT_FEATURES = {"wikitext103": "text", "pg19": "book_text", "enwik8": "text"}
# Appended to every document in the stream. Wikitext articles and enwik8 chunks are consecutive
# pieces of one text; PG-19 books are stripped, so a newline keeps one book's last word apart
# from the next book's first. Catalog datasets get a newline too.
SEPARATORS = dict.fromkeys(STREAM_DATASETS, "")  # joined as one text, nothing between
_READ_BATCH = 64  # Documents per batched read: one-by-one reads are much slower.


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """A parsed corpus spec: 'tfds:wikitext103/raw' -> name 'wikitext103', config 'raw'."""

    name: str
    config: str | None
    catalog: bool

    @property
    def label(self) -> str:
        return self.name + (f"/{self.config}" if self.config else "")


def parse_spec(corpus: str) -> TfdsSpec:
    """Parses 'tfds:NAME[/CONFIG]' (our builders) or 'tfds-catalog:NAME' (tfds' catalog)."""
    if corpus.startswith(CATALOG_PREFIX):
        return TfdsSpec(corpus[len(CATALOG_PREFIX) :], None, catalog=True)
    name, _, config = corpus[len(TFDS_PREFIX) :].partition("/")
    known = ", ".join(TFDS_PREFIX + n for n in BUILDERS)
    if name not in BUILDERS:
        raise DataError(
            f"Unknown dataset {corpus!r}; llp_jax builds {known}, and "
            f"'{CATALOG_PREFIX}NAME' reads a tfds catalog dataset."
        )
    configs = [c.name for c in BUILDERS[name].BUILDER_CONFIGS]
    if config and config not in configs:
        raise DataError(f"{corpus!r}: {name} has configs {configs or 'none'}, not {config!r}.")
    return TfdsSpec(name, config or None, catalog=False)


@contextlib.contextmanager
def _few_download_retries(retries: int = 2):
    """tfds retries a failed download ~10 times over minutes; offline that is only a delay."""
    from tensorflow_datasets.core.download import downloader

    saved, downloader.MAX_RETRIES = downloader.MAX_RETRIES, retries
    try:
        yield
    finally:
        downloader.MAX_RETRIES = saved


def _check_manual(manual: str | None) -> None:
    """A manual folder that was given must be there: a mistyped one made the builders try the
    download, then ask for the folder as if none had been given."""
    if manual and not os.path.isdir(manual):
        raise DataError(f"--config.data.manual_dir={manual} does not exist; give the folder "
                        "that holds the dataset's downloaded files")  # fmt: skip


def prepare_builder(spec: TfdsSpec, data_dir: str = "", manual_dir: str = ""):
    """The dataset's tfds builder, prepared as ArrayRecord in `data_dir` (built if needed).

    Raises:
      DataError: one line when the data cannot be obtained (offline without a manual folder,
        a catalog dataset that needs TensorFlow, a dataset prepared as TFRecord).
    """
    data_dir = os.path.expanduser(data_dir) if data_dir else None
    manual = os.path.expanduser(manual_dir) if manual_dir else None
    download_config = tfds.download.DownloadConfig(manual_dir=manual)
    if not spec.catalog:
        builder = BUILDERS[spec.name](data_dir=data_dir, config=spec.config)
        if not builder.is_prepared():
            _check_manual(manual)
            builder.download_and_prepare(
                file_format="array_record", download_config=download_config
            )
        return builder
    try:
        builder = tfds.builder(spec.label, data_dir=data_dir)
    except ValueError as e:  # DatasetNotFoundError, or a bad config name.
        raise DataError(
            f"tfds has no dataset {spec.label!r} ({type(e).__name__}); see tfds' catalog."
        )
    hint = builder_utils.offline_hint(f"{CATALOG_PREFIX}{spec.label}", "the raw files")
    if not builder.is_prepared():
        _check_manual(manual)
        if not builder_utils.tensorflow_available():
            ours = (
                f", or use corpus 'tfds:{spec.name}' (no TensorFlow)"
                if spec.name in BUILDERS
                else ""
            )
            raise DataError(
                f"Building the tfds catalog dataset {spec.label!r} needs TensorFlow: "
                f"{builder_utils.TF_INSTALL}; or pass --config.data.data_dir=DIR where it is "
                f"prepared with file_format='array_record'{ours}."
            )
        try:
            with _few_download_retries():
                builder.download_and_prepare(
                    file_format="array_record", download_config=download_config
                )
        except (OSError, tfds.download.DownloadError) as e:
            raise DataError(f"Could not build {spec.label!r} ({type(e).__name__}: {e}); {hint}.")
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise DataError(
            f"{spec.label!r} in {builder.data_dir} is stored as {builder.info.file_format.value}, "
            "which needs TensorFlow to read; prepare it with file_format='array_record'."
        )
    return builder


def text_feature(spec: TfdsSpec, builder, override: str = "") -> str:
    """The feature holding the document text: given, known, or the first Text feature."""
    if override:
        return override
    if spec.name in TEXT_FEATURES:
        return TEXT_FEATURES[spec.name]
    for key, feature in builder.info.features.items():
        if isinstance(feature, tfds.features.Text):
            return key
    raise DataError(f"{spec.label!r} has no Text feature; set --config.data.text_field=NAME.")


def iter_documents(source, feature: str, indices=None):
    """Yields each document's raw UTF-8 bytes, read in batches."""
    indices = range(len(source)) if indices is None else indices
    for i in range(0, len(indices), _READ_BATCH):
        for example in source.__getitems__([int(k) for k in indices[i : i + _READ_BATCH]]):
            text = example[feature]
            yield text if isinstance(text, bytes) else str(text).encode("utf-8")
