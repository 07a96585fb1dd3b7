"""Real corpora through tensorflow-datasets: prepare once, tokenise once, train from ArrayRecord.

The flow for a 'tfds:' / 'tfds-catalog:' corpus (names in tfds_sources.py): the builder writes
documents to ArrayRecord (`download_and_prepare`, once), read back with
`builder.as_data_source()`; the tokenizer is bytes or SentencePiece trained on a sample of the
training split (saved beside the tokens); each split is tokenised once into fixed-length token
chunks (token_cache.py explains why chunks rather than tokenising on the fly), which the Grain
pipeline slices training windows from. No whole training split is ever held in memory.

`data_dir` and `token_dir` are local (or mounted) folders: the token files are written with
plain file I/O, not gs://. Every process prepares what is missing; before a multi-host run,
prepare once with `python -m experiments.prepare_data --config=...` (the `llp-prepare-data`
console script) so that every process finds everything ready (concurrent writers are safe, files
are renamed into place, but the work would be repeated).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import numpy as np

from llp_jax import paths
from llp_jax.data import hf_tokenizer, token_cache, tokenizers, txl_bytes
from llp_jax.data.corpus import SPLITS, Corpus, DataError
from llp_jax.data.tfds_sources import (
    SEPARATORS,
    iter_documents,
    parse_spec,
    prepare_builder,
    text_feature,
)


def sentencepiece_sample(source, feature: str, num_chars: int, seed: int) -> str:
    """A SentencePiece training sample: slices of documents in a seeded random order.

    Each document gives at most num_chars / 500 characters (from a random line start), so even
    with PG-19's 400 kB books the sample covers hundreds of books, not the first few.
    """
    rng = np.random.default_rng([seed, 1])
    per_doc = max(num_chars // 500, 4096)
    pieces, total = [], 0
    for raw in iter_documents(source, feature, rng.permutation(len(source))):
        text = raw.decode("utf-8", errors="replace")
        if len(text) > per_doc:
            start = text.find("\n", int(rng.integers(0, len(text) - per_doc))) + 1
            text = text[start : start + per_doc]
        pieces.append(text)
        total += len(text)
        if total >= num_chars:
            break
    return "\n".join(pieces)[:num_chars]


def load_tokenizer(config, sources, feature: str, token_root: str):
    """(tokenizer, token folder): bytes, their Transformer-XL numbering (`txl_bytes`), a given
    .model or tokenizer.json, or SentencePiece on a train sample.

    The trained model is saved in its token folder, so later runs neither sample nor train.
    """
    kind = config.tokenizer
    if kind == "byte":
        return tokenizers.ByteTokenizer(), os.path.join(token_root, "byte")
    if kind == txl_bytes.KIND:
        return _txl_bytes(sources, feature, token_root)
    if kind != "sentencepiece":  # a .model or a tokenizer.json: tokens by its bytes
        tok = tokenizers.make_tokenizer(kind)
        digest = hashlib.sha256(tok.file_bytes).hexdigest()[:12]
        spm = isinstance(tok, tokenizers.SentencePieceTokenizer)
        prefix = "spm" if spm else f"hf{hf_tokenizer.IDS_VERSION}"
        prefix = txl_bytes.KIND if isinstance(tok, txl_bytes.TxlByteTokenizer) else prefix
        return tok, os.path.join(token_root, f"{prefix}_{digest}")
    key = f"sp_{config.sp_model_type}{config.vocab_size}_n{config.sp_sample_chars}_s{config.seed}"
    folder = os.path.join(token_root, key)
    path = os.path.join(folder, "tokenizer.model")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            proto = f.read()
        fix = f"delete {folder} to train the tokenizer and encode the data again"
        return tokenizers.SentencePieceTokenizer(proto, name=key, source=path, fix=fix), folder
    sample = sentencepiece_sample(
        sources["train"], feature, int(config.sp_sample_chars), int(config.seed)
    )
    tok = tokenizers.train_sentencepiece(
        sample,
        vocab_size=config.vocab_size,
        model_type=config.sp_model_type,
        cache_dir=config.cache_dir,
    )
    paths.write_bytes(path, tok.model_proto)  # atomic; a failed write names the path
    return tokenizers.SentencePieceTokenizer(tok.model_proto, name=key), folder


def _txl_bytes(sources, feature: str, token_root: str):
    """Transformer-XL's numbering of the dataset's bytes, counted over every split once (as
    their corpus counts train, valid and test) and kept beside its tokens."""
    path = os.path.join(token_root, txl_bytes.KIND, txl_bytes.TxlByteTokenizer.file_name)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            fix = f"delete {os.path.dirname(path)} to count the bytes and encode the data again"
            tok = txl_bytes.TxlByteTokenizer.from_json(f.read(), source=path, fix=fix)
    else:
        print(f"[llp_jax.data] counting the bytes of every split for '{txl_bytes.KIND}'")
        parts = (d for s in SPLITS if s in sources for d in iter_documents(sources[s], feature))
        tok = txl_bytes.TxlByteTokenizer.count(parts)
        paths.write_bytes(path, tok.file_bytes)  # atomic
    return tok, os.path.join(token_root, tok.name.replace(":", "_"))


def prepare_tokens(config):
    """Prepares the dataset and its token chunks; returns (spec, builder, tokenizer, chunks).

    `chunks` maps each split the dataset has (of train / validation / test) to its
    `token_cache.TokenChunks`. Splits already tokenised (a `<split>.json` in the token folder)
    are reused.
    """
    spec = parse_spec(config.corpus)
    builder = prepare_builder(spec, config.data_dir, config.manual_dir)
    sources = builder.as_data_source()
    feature = text_feature(spec, builder, config.text_field)
    token_root = config.token_dir or os.path.join(os.fspath(builder.data_dir), "llp_tokens")
    tokenizer, folder = load_tokenizer(config, sources, feature, os.path.expanduser(token_root))
    # Books and catalog records are documents; Wikitext's articles and enwik8's chunks are
    # consecutive pieces of one text, which the papers evaluate as one stream.
    eod = config.document_boundaries == "eod" and (spec.catalog or spec.name not in SEPARATORS)
    if eod:
        folder += "_eod"
    # WikiText's unknown-word marker, as the paper's code writes it for BERT: '[UNK]'.
    unk = getattr(tokenizer, "unk_token", None) if spec.name == "wikitext103" else None
    chunks = {}
    for split in (s for s in SPLITS if s in sources):
        meta = token_cache.read_meta(folder, split)
        if meta is None:
            print(
                f"[llp_jax.data] tokenising {spec.label} {split} with {tokenizer.name} -> {folder}"
            )
            meta = token_cache.tokenize_documents(
                folder,
                split,
                _unk_written(iter_documents(sources[split], feature), unk),
                tokenizer,
                separator="\n" if spec.catalog else SEPARATORS.get(spec.name, "\n"),
                chunk_tokens=int(config.chunk_tokens),
                eod_id=tokenizers.document_end(tokenizer) if eod else None,
            )
        chunks[split] = token_cache.TokenChunks(folder, split, meta)
    return spec, builder, tokenizer, chunks


def _unk_written(documents, unk: str | None):
    """WikiText-103's `<unk>` as `unk` (a tokenizer's own unknown token), or as it is."""
    if unk is None:
        return documents
    return (doc.replace(b"<unk>", unk.encode("utf-8")) for doc in documents)


class _SplitTokens(Mapping):
    """split -> int32 token array, read from the chunks on first use and kept.

    'train' is a sample of `train_sample_tokens` (whole records spread evenly over the split)
    for the unigram baseline; the evaluation splits are their first `eval_max_tokens` tokens
    (0 = all), which for Wikitext-103, PG-19 and enwik8 fit in memory.
    """

    def __init__(self, chunks, train_sample_tokens: int, eval_max_tokens: int):
        self._chunks, self._arrays = chunks, {}
        self.limits = {
            s: min(len(c), (train_sample_tokens if s == "train" else eval_max_tokens) or len(c))
            for s, c in chunks.items()
        }

    def __getitem__(self, split: str) -> np.ndarray:
        if split not in self._arrays:
            chunks, limit = self._chunks[split], self.limits[split]
            size = chunks.chunk_tokens
            need, full = -(-limit // size), len(chunks) // size
            if split == "train" and limit < len(chunks) and need <= full:
                starts = np.arange(need) * (full // need) * size  # Whole records, spread out.
                self._arrays[split] = np.concatenate([chunks.read(a, a + size) for a in starts])[
                    :limit
                ]
            else:
                self._arrays[split] = chunks.read(0, limit)
        return self._arrays[split]

    def __contains__(self, split) -> bool:  # Mapping's default would read the split.
        return split in self._chunks

    def __iter__(self):
        return iter(self._chunks)

    def __len__(self) -> int:
        return len(self._chunks)


class _EvalText(Mapping):
    """Evaluation split -> its text, decoded from the kept tokens on first use (`corpus.splits`).

    For character counts and other text-level measures of what is evaluated; the training text
    is not held (not a key). Decoding is exact for SentencePiece (up to U+2581) and for valid
    UTF-8 bytes; an invalid byte becomes one U+FFFD.
    """

    def __init__(self, tokens: _SplitTokens, tokenizer):
        self._tokens, self._tokenizer, self._texts = tokens, tokenizer, {}

    def __getitem__(self, split: str) -> str:
        if split not in self:
            raise KeyError(f"{split!r}: only evaluation splits' text is available ({list(self)}).")
        if split not in self._texts:
            self._texts[split] = self._tokenizer.decode(self._tokens[split])
        return self._texts[split]

    def __contains__(self, split) -> bool:
        return split != "train" and split in self._tokens

    def __iter__(self):
        return (s for s in self._tokens if s != "train")

    def __len__(self) -> int:
        return sum(1 for _ in self)


def build_tfds_parts(config, seq_len: int) -> dict:
    """The fields of `datasets.Datasets` for a 'tfds:' / 'tfds-catalog:' corpus (training
    windows come from disk), but for the config, window and process shard.

    `words` and `num_bytes` of an evaluation split capped by `eval_max_tokens` are scaled to the
    tokens kept (exact counts are in `num_tokens` / the token folder's json files).
    """
    spec, builder, tokenizer, chunks = prepare_tokens(config)
    if "train" not in chunks or len(chunks["train"]) < seq_len + 1:
        num = len(chunks["train"]) if "train" in chunks else 0
        raise DataError(
            f"{config.corpus!r} has {num} training tokens, fewer than one training window of "
            f"seq_len + 1 = {seq_len + 1}; use a larger dataset or a smaller seq_len."
        )
    tokens = _SplitTokens(chunks, int(config.train_sample_tokens), int(config.eval_max_tokens))

    def scaled(split: str, key: str) -> int:
        meta, c = chunks[split].meta, chunks[split]
        keep = len(c) if split == "train" else tokens.limits[split]
        return meta[key] if keep == len(c) else round(meta[key] * keep / max(len(c), 1))

    config_name = f"/{builder.builder_config.name}" if builder.builder_config else ""
    desc = (
        f"tfds {builder.name}{config_name} {builder.version} in {builder.data_dir}; tokens in "
        f"{chunks['train'].folder}"
    )
    if config.eval_max_tokens:
        desc += f"; evaluation splits capped at {int(config.eval_max_tokens):,} tokens"
    return dict(
        tokenizer=tokenizer,
        corpus=Corpus(name=spec.label, splits=_EvalText(tokens, tokenizer), description=desc),
        tokens=tokens,
        words={s: scaled(s, "words") for s in chunks},
        num_bytes={s: scaled(s, "bytes") for s in chunks},
        train_tokens=chunks["train"],
        num_tokens={s: len(c) for s, c in chunks.items()},
    )
