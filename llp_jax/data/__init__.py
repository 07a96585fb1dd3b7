"""Data layer: corpora (embedded Austen, user text, tfds datasets), tokenizers, Grain pipeline.

config.py (the typed `config.data` section) -> corpus.py / tfds_data.py (text) -> tokenizers.py
-> pipeline.py (training windows as a checkpointable Grain iterator) -> datasets.py
(`build_datasets`, what the trainer and evaluators get). The tfds side (wikitext.py, pg19.py,
enwik8.py builders; tfds_sources.py, tfds_data.py, token_cache.py) is imported only when
`config.data.corpus` names a 'tfds:' dataset.
"""

from llp_jax.data.baseline import unigram_perplexity
from llp_jax.data.config import DataConfig, default_data_config
from llp_jax.data.corpus import AUSTEN_SHA256, SPLITS, Corpus, DataError, count_words, load_austen
from llp_jax.data.datasets import Datasets, build_datasets, encode_documents, load_corpus
from llp_jax.data.pipeline import (
    make_global_batch,
    make_train_dataset,
    make_train_iterator,
    num_windows,
)
from llp_jax.data.tokenizers import (
    ByteTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    make_tokenizer,
    train_sentencepiece,
)
from llp_jax.data.user_text import load_text_corpus, read_text_file

__all__ = [
    "AUSTEN_SHA256",
    "SPLITS",
    "ByteTokenizer",
    "Corpus",
    "DataConfig",
    "DataError",
    "Datasets",
    "SentencePieceTokenizer",
    "Tokenizer",
    "build_datasets",
    "count_words",
    "encode_documents",
    "default_data_config",
    "load_austen",
    "load_corpus",
    "load_text_corpus",
    "make_global_batch",
    "make_tokenizer",
    "make_train_dataset",
    "make_train_iterator",
    "num_windows",
    "read_text_file",
    "train_sentencepiece",
    "unigram_perplexity",
]
