"""`config.data`: which text, which tokenizer, how training windows are cut (one typed section)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections

from llp_jax import paths, schema

STREAM_DATASETS = ("wikitext103", "enwik8")  # tfds builders of one text (`one_stream`)
TOKENIZERS = ("byte", "sentencepiece", "txl_bytes")  # or a SentencePiece .model, a tokenizer.json
SP_MODEL_TYPES = ("unigram", "bpe")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The data section of an experiment config.

    Attributes:
      corpus: 'austen' or 'web_bible' (embedded); your own text (user_text.py): a file, 'a.txt,b.md', a folder
        (every text file below it), a glob ('docs/**/*.md'), JSON Lines ('chats.jsonl', one
        document per line), CSV / TSV ('reviews.csv', one document per row); or a tfds dataset: 'tfds:wikitext103' ('tfds:wikitext103/raw'),
        'tfds:pg19', 'tfds:enwik8', 'tfds-catalog:NAME'.
      text_field: the field holding the text: of a JSON Lines record, or the Parquet / CSV / TSV
        column ('' = 'text'), or of a
        'tfds-catalog:' dataset ('' = its first Text feature).
      document_boundaries: 'eod' (the tokenizer's end-of-document token after every document, so
        a model can tell documents apart and `model.document_mask` can keep attention inside
        one) | 'none' (documents run into each other, joined by a newline).
      tokenizer: 'byte' | 'sentencepiece' (trained on the train split) | 'txl_bytes'
        (Transformer-XL's enwik8 ids, the authors' enwik8 checkpoints': txl_bytes.py)
        | path/to/existing.model
        | a Hugging Face tokenizer.json (hf_tokenizer.py) or BERT vocab.txt | a folder holding one
        of them (a hub snapshot's tokenizer.json first).
      vocab_size: SentencePiece vocabulary size.
      sp_model_type: SentencePiece 'unigram' | 'bpe'.
      cache_dir: SentencePiece model cache; '' = ~/.cache/llp_jax.
      seed: shuffle order and window offsets.
      shuffle: shuffle training windows (differently each epoch).
      train_stride: tokens between training window starts; 0 = seq_len (non-overlapping).
      random_offset: shift all windows by a random 0..stride-1 each epoch.
      data_dir: tfds only: prepared datasets; '' = tfds' default (~/tensorflow_datasets).
      manual_dir: tfds only: raw files (wiki.*.tokens, the PG-19 tree, enwik8).
      token_dir: tfds only: tokenised splits; '' = <prepared dataset folder>/llp_tokens.
      (data_dir, manual_dir, token_dir and cache_dir are local or mounted folders, never URLs.)
      chunk_tokens: tfds only: tokens per ArrayRecord record of a tokenised split.
      sp_sample_chars: tfds only: SentencePiece trains on this much of the train split.
      eval_max_tokens: tfds only: evaluation splits keep their first this many tokens (0 = all).
      train_sample_tokens: tfds only: tokens['train'] (unigram baseline) is a sample this big.
    """

    corpus: str = "austen"
    text_field: str = ""
    document_boundaries: str = "eod"
    tokenizer: str = "byte"
    vocab_size: int = 2048
    sp_model_type: str = "unigram"
    cache_dir: str = ""
    seed: int = 0
    shuffle: bool = True
    train_stride: int = 0
    random_offset: bool = False
    data_dir: str = ""
    manual_dir: str = ""
    token_dir: str = ""
    chunk_tokens: int = 65536
    sp_sample_chars: int = 20_000_000
    eval_max_tokens: int = 0
    train_sample_tokens: int = 10_000_000

    @classmethod
    def from_any(cls, config: Any) -> DataConfig:
        return schema.from_any(cls, config, "data")

    @property
    def is_tfds(self) -> bool:
        """A tfds corpus ('tfds:...', 'tfds-catalog:...'): it keeps its tokenizer with its
        prepared tokens, where a text corpus is tokenised when it is read."""
        return self.corpus.startswith(("tfds:", "tfds-catalog:"))

    @property
    def is_own_text(self) -> bool:
        """The user's own files (not an embedded corpus or a tfds one): `corpus` says where
        the text is, not what it is (the workdir's training fingerprint says that)."""
        return not self.is_tfds and self.corpus.strip().lower() not in ("", "austen", "web_bible")

    @property
    def one_stream(self) -> bool:
        """Whether the corpus is one text, not documents: WikiText's articles and enwik8's chunks
        are consecutive pieces of one text, which the papers evaluate as one stream."""
        return self.corpus.partition("/")[0] in tuple("tfds:" + n for n in STREAM_DATASETS)

    def replace(self, **changes: Any) -> DataConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> DataConfig:
        check = schema.Checker("data", self)
        check(bool(self.corpus.strip()), "corpus", "must name a corpus ('austen', files, tfds:...)")
        # A file or folder is not looked for here: a workdir's record names where its tokenizer
        # was, and the run keeps its own copy (tokenizers.check_spec, where one is built).
        path_like = self.tokenizer.endswith((".model", ".json")) or os.sep in self.tokenizer
        check(
            self.tokenizer in TOKENIZERS or path_like or os.path.isdir(self.tokenizer),
            "tokenizer",
            f"must be one of {TOKENIZERS}, a path to a SentencePiece .model file or a Hugging "
            "Face tokenizer.json (or the folder holding it)",
        )
        check.one_of("sp_model_type", SP_MODEL_TYPES)
        check.one_of("document_boundaries", ("eod", "none"))
        if self.tokenizer == "sentencepiece":
            check.at_least("vocab_size", 300)  # 261 byte and special pieces + the text's
        check(self.vocab_size < 2**31, "vocab_size", "must be below 2**31 (ids are int32)")
        for field in ("data_dir", "manual_dir", "token_dir", "cache_dir"):
            check(
                not paths.is_url(getattr(self, field)),
                field,
                "must be a local or mounted folder (the tfds builders, ArrayRecord and the token "
                "files use plain file I/O): copy the files to a local disk or mount the bucket "
                "(gcsfuse); a gs:// --config.data.corpus of your own text is read directly",
            )
            blocker = paths.file_in_the_way(getattr(self, field))
            check(blocker is None, field, f"cannot be a folder: {blocker} is a file")
        for field in ("train_stride", "eval_max_tokens", "seed"):
            check.at_least(field, 0)
        for field in ("chunk_tokens", "sp_sample_chars", "train_sample_tokens"):
            check.at_least(field, 1)
        return self


def default_data_config() -> ml_collections.ConfigDict:
    """The defaults of `config.data`, as the ConfigDict config files start from."""
    return schema.to_configdict(DataConfig())
