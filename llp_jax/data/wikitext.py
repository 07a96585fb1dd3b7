"""Wikitext-103 as a tfds builder (`llp_wikitext103`), one example per Wikipedia article.

The catalog has no Wikitext builder. This one reads the standard `wiki.{train,valid,test}.tokens`
files (config 'tokens', the word-level release with `<unk>`, which the paper's code uses) or
`wiki.*.raw` (config 'raw') from a manual folder, or downloads the standard archive.

Articles are cut where the files start them: a level-1 heading line ` = Title = ` (not
` = = Section = = `) after a blank line. Each article keeps its exact lines, including the blank
line before its heading (text before the first heading goes with the first article), so the
articles of a split, concatenated in order, are the file byte for byte: the token stream the
pipeline builds from them is the one the standard benchmarks use.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Iterable, Iterator
from typing import ClassVar

import tensorflow_datasets as tfds

from llp_jax.data import builder_utils
from llp_jax.data.corpus import DataError

# metamind's S3 bucket, the original home, answers 403 since 2024; this is the authors' mirror.
URLS = {
    "tokens": "https://wikitext.smerity.com/wikitext-103-v1.zip",
    "raw": "https://wikitext.smerity.com/wikitext-103-raw-v1.zip",
}
_SPLIT_FILES = {"train": "wiki.train", "validation": "wiki.valid", "test": "wiki.test"}
_TITLE_RE = re.compile(r"^ = [^=].* = $")


def split_articles(lines: str | Iterable[str]) -> Iterator[tuple[str, str]]:
    """Cuts Wikitext into (title, article text) pairs that concatenate back to the input.

    Args:
      lines: the whole text, or its lines with their '\\n' kept (e.g. a file opened with
        `newline='\\n'`), so a 540 MB training file is streamed rather than held twice.
    """
    if isinstance(lines, str):
        lines = io.StringIO(lines, newline="\n")
    buf: list[str] = []
    title = None
    for line in lines:
        after_blank = not buf or not buf[-1].strip()
        if after_blank and _TITLE_RE.match(line.rstrip("\n")):
            if title is not None:
                blank = [buf.pop()]  # The blank line before a heading opens the new article.
                yield title, "".join(buf)
                buf = blank
            title = line.strip(" =\n")
        buf.append(line)
    if buf:
        yield title or "", "".join(buf)


@dataclasses.dataclass
class WikitextConfig(tfds.core.BuilderConfig):
    """Which release: 'tokens' (wiki.*.tokens, word level) or 'raw' (wiki.*.raw)."""

    suffix: str = ".tokens"


class Wikitext103(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Wikitext-103 articles: {'title': str, 'text': the article's exact lines}."""

    name = "llp_wikitext103"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS: ClassVar[list[WikitextConfig]] = [
        WikitextConfig(name="tokens", suffix=".tokens", description="wiki.*.tokens (v1)"),
        WikitextConfig(name="raw", suffix=".raw", description="wiki.*.raw (raw-v1)"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens (or the .raw files of "
        "the raw release) in the manual folder, or the zip as downloaded (wikitext-103-v1.zip, "
        "wikitext-103-raw-v1.zip); subfolders such as wikitext-103/ are fine."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Wikitext-103 (Merity et al. 2016), one example per article.",
            features=tfds.features.FeaturesDict(
                {"title": tfds.features.Text(), "text": tfds.features.Text()}
            ),
            homepage="https://arxiv.org/abs/1609.07843",
            disable_shuffling=True,  # Article order = file order, so the stream is the file.
        )

    def _split_generators(self, dl_manager):
        suffix = self.builder_config.suffix
        names = [_SPLIT_FILES[s] + suffix for s in _SPLIT_FILES]
        root = builder_utils.manual_dir_or_none(dl_manager)
        if root is None:  # Without a manual folder, download (a wrong folder is an error below).
            hint = builder_utils.offline_hint(
                f"tfds:wikitext103/{self.builder_config.name}", ", ".join(names)
            )
            url = URLS[self.builder_config.name]
            downloads = os.fspath(dl_manager.download_dir)
            archive = builder_utils.download(url, downloads, hint=hint)
            root = builder_utils.extract_zip(archive, downloads)
        if builder_utils.find_file(root, [names[0]]) is None:
            # The zip as downloaded (wikitext-103-v1.zip, wikitext-103-raw-v1.zip) in the folder.
            archive = builder_utils.find_file(
                root, [os.path.basename(URLS[self.builder_config.name])]
            )
            if archive is not None:
                root = builder_utils.extract_zip(archive, os.fspath(dl_manager.download_dir))
        paths = {}
        for split, stem in _SPLIT_FILES.items():
            paths[split] = builder_utils.find_file(root, [stem + suffix])
            if paths[split] is None:
                raise DataError(
                    f"{stem + suffix} not found under {root}; pass a manual_dir holding "
                    f"{', '.join(names)} (or none, to download them)."
                )
        return {split: self._generate_examples(path) for split, path in paths.items()}

    def _generate_examples(self, path: str):
        with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
            for i, (title, article) in enumerate(split_articles(f)):
                yield i, {"title": title, "text": article}
