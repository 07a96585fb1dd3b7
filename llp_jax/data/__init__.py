"""Data layer: corpora (embedded Austen, user text, tfds datasets), tokenizers, Grain pipeline.

The tfds side (wikitext.py, pg19.py, enwik8.py builders; tfds_sources.py, tfds_data.py,
token_cache.py) is imported only when `config.data.corpus` names a 'tfds:' dataset.
"""

from llp_jax.data.corpus import (
    AUSTEN_SHA256,
    SPLITS,
    Corpus,
    DataError,
    count_words,
    load_austen,
    load_corpus,
    load_text_corpus,
    read_text_file,
)
from llp_jax.data.pipeline import (
    Datasets,
    build_datasets,
    default_data_config,
    eval_tokens,
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
    unigram_perplexity,
)

__all__ = [
    "AUSTEN_SHA256",
    "SPLITS",
    "Corpus",
    "DataError",
    "count_words",
    "load_austen",
    "load_corpus",
    "load_text_corpus",
    "read_text_file",
    "Datasets",
    "build_datasets",
    "default_data_config",
    "eval_tokens",
    "make_global_batch",
    "make_train_dataset",
    "make_train_iterator",
    "num_windows",
    "ByteTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "make_tokenizer",
    "train_sentencepiece",
    "unigram_perplexity",
]
