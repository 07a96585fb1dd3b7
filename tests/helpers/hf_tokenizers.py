"""Hugging Face tokenizer.json files of the common families, trained here on Austen by the
`tokenizers` library and saved by it (the file format every tokenizer on the hub ships), with
each family's pipeline as its hub file has it: bert-base-cased's WordPiece (BERT normaliser and
pre-tokeniser, [CLS] ... [SEP] template), GPT-2's byte-level BPE (<|endoftext|>), Llama 3's
byte-level BPE behind its split regex (<|begin_of_text|>, <|end_of_text|>), and T5's Unigram
behind a Metaspace (</s>, <pad>; no newline token)."""

from __future__ import annotations

import os

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from llp_jax.data import load_austen

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
FAMILIES = ("bert-base-cased", "gpt2", "llama3", "t5")


def _lines() -> list[str]:
    return load_austen().splits["train"][:300_000].splitlines()


def _bert() -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(_lines(), trainers.WordPieceTrainer(vocab_size=1500,
                                                                special_tokens=specials))  # fmt: skip
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )  # fmt: skip
    return tok


def _byte_level(split: bool, specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not split)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT),
                                                                       "isolated"), level])
                         if split else level)  # fmt: skip
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(_lines(), trainer)
    return tok


def _t5() -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(),
                                           normalizers.Replace(Regex(r"\s+"), " ")])  # fmt: skip
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=600, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>")  # fmt: skip
    tok.train_from_iterator(_lines(), trainer)
    return tok


def save_family(name: str, folder) -> str:
    """Writes `folder/<name>/tokenizer.json` (as a hub snapshot holds it); returns the folder."""
    make = {
        "bert-base-cased": _bert,
        "gpt2": lambda: _byte_level(False, ["<|endoftext|>"]),
        "llama3": lambda: _byte_level(True, ["<|begin_of_text|>", "<|end_of_text|>"]),
        "t5": _t5,
    }[name]
    out = os.path.join(os.fspath(folder), name)
    os.makedirs(out, exist_ok=True)
    make().save(os.path.join(out, "tokenizer.json"))
    return out
