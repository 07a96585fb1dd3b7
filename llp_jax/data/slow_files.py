"""A tokenizer.json made from a "slow" tokenizer's files, as transformers' converters make it
(`convert_slow_tokenizer.py`), for the downloads that hold no tokenizer.json: a BERT vocab.txt
(what `BertTokenizer.from_pretrained` caches; the authors' code uses it), and GPT-2's byte-level
BPE as vocab.json + merges.txt (older hub snapshots, Megatron-LM's and fairseq's GPT-2 files).
`library`: the `tokenizers` module."""

from __future__ import annotations

import json
import os

BPE_VOCAB = "vocab.json"
BPE_MERGES = "merges.txt"
# Special tokens of the byte-level BPE families (GPT-2's one, RoBERTa's and BART's), made special
# where the vocabulary holds them, as the slow tokenizers' special-token maps do.
_BPE_SPECIALS = ("<|endoftext|>", "<s>", "</s>", "<pad>", "<unk>", "<mask>")


def is_bpe_vocab(path: str) -> bool:
    """A vocab.json with its merges.txt beside it (a GPT-2-style BPE)."""
    return os.path.basename(path).endswith(BPE_VOCAB) and os.path.isfile(_merges_beside(path))


def _merges_beside(vocab_path: str) -> str:
    """merges.txt beside vocab.json (gpt2-merges.txt beside gpt2-vocab.json: Megatron-LM's)."""
    name = os.path.basename(vocab_path)
    return os.path.join(os.path.dirname(vocab_path), name[: -len(BPE_VOCAB)] + BPE_MERGES)


def bpe_from_vocab(path: str, vocab: bytes, library) -> bytes:
    """The tokenizer.json of GPT-2-style vocab.json + merges.txt, as transformers' GPT2Converter
    builds it: byte-level BPE, GPT-2's pre-tokeniser (add_prefix_space as tokenizer_config.json
    beside says; False without one, GPT2Tokenizer's default) and decoder."""
    words = json.loads(vocab)
    if not isinstance(words, dict) or not all(isinstance(i, int) for i in words.values()):
        raise ValueError(f"{os.path.basename(path)} is not a BPE vocabulary (token -> id)")
    with open(_merges_beside(path), encoding="utf-8") as f:
        lines = f.read().split("\n")
    lines = lines[1:] if lines and lines[0].startswith("#version") else lines
    merges = [tuple(line.split(" ")) for line in lines if line.strip()]
    if any(len(pair) != 2 for pair in merges):
        raise ValueError(f"{BPE_MERGES} is not a list of merges (two tokens a line)")
    config = _config_beside(path)
    models, pre, decoders = library.models, library.pre_tokenizers, library.decoders
    tok = library.Tokenizer(models.BPE(vocab=words, merges=merges, continuing_subword_prefix="",
                                       end_of_word_suffix="", fuse_unk=False))  # fmt: skip
    tok.pre_tokenizer = pre.ByteLevel(add_prefix_space=config.get("add_prefix_space", False))
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = library.processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([library.AddedToken(t, special=True, normalized=False)
                            for t in _BPE_SPECIALS if t in words])  # fmt: skip
    return tok.to_str().encode("utf-8")


def _config_beside(path: str) -> dict:
    beside = os.path.join(os.path.dirname(path), "tokenizer_config.json")
    if not os.path.isfile(beside):
        return {}
    with open(beside, "rb") as f:
        config = json.loads(f.read())
    return config if isinstance(config, dict) else {}


def bert_from_vocab(path: str, vocab: bytes, library) -> bytes:
    """The tokenizer.json of a BERT vocab.txt, as `BertTokenizer(vocab.txt)` tokenises: casing,
    accents and Chinese characters as tokenizer_config.json beside it says (its defaults
    without one: lowercased, as BertTokenizer's)."""
    words = vocab.decode("utf-8").split("\n")
    words = words[:-1] if words and not words[-1] else words
    if len(set(words)) != len(words) or "[UNK]" not in words:
        raise ValueError("not a BERT vocabulary: one token a line, each once, [UNK] among them")
    config = _config_beside(path)
    bert = library.implementations.BertWordPieceTokenizer(
        {word: i for i, word in enumerate(words)},
        lowercase=config.get("do_lower_case", True),
        strip_accents=config.get("strip_accents"),
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
    )
    return bert._tokenizer.to_str().encode("utf-8")
