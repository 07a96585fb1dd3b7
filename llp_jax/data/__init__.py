"""Data layer: corpora (embedded Austen + user text), tokenizers and the Grain input pipeline."""

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
