"""Hugging Face tokenizer.json files of the common families, trained here on Austen by the
`tokenizers` library and saved by it (the file format every tokenizer on the hub ships), with
each family's pipeline as its hub file has it: bert-base-cased's WordPiece (BERT normaliser and
pre-tokeniser, [CLS] ... [SEP] template), GPT-2's byte-level BPE (<|endoftext|>), Llama 3's
byte-level BPE behind its split regex (<|begin_of_text|>, <|end_of_text|>), both trained on
text with its newlines (so runs of newlines are tokens, as in theirs), T5's Unigram behind a
Metaspace (</s>, <pad>; no newline token), and Llama 2's byte-fallback BPE as the hub's files
hold it: a model trained by SentencePiece with Llama 2's options, converted as transformers'
LlamaConverter converts it, both ways it does (legacy: '▁' prepended by the normaliser; not
legacy: by a Metaspace pre-tokeniser, to the first piece only), and Gemma's the same way
(nothing prepended; newline runs '\\n', '\\n\\n', '\\n\\n\\n' are pieces of their own)."""

from __future__ import annotations

import os

from tokenizers import (
    AddedToken,
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
FAMILIES = ("bert-base-cased", "gpt2", "llama3", "t5", "llama2", "llama2-legacy", "gemma")
# Texts every family must encode as its library does: lines, blank lines, spaces at both
# ends, tabs, CRLF, accents, emoji, CJK, a lone newline, nothing.
TEXTS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune",
    "Two\nlines", "blank\n\nlines\n\n\n", " leading and trailing spaces \n", "tab\tand\r\nCRLF",
    "caf\u00e9 \u2014 na\u00efve \U0001f600 \u4e2d\u6587", "\n", "",
]  # fmt: skip


def _lines() -> list[str]:
    return load_austen().splits["train"][:300_000].splitlines()


def _paragraphs() -> list[str]:
    """Training text with its newlines, a few lines per string."""
    lines = load_austen().splits["train"][:300_000].splitlines(keepends=True)
    return ["".join(lines[i : i + 8]) for i in range(0, len(lines), 8)]


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
    tok.train_from_iterator(_paragraphs(), trainer)
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


def _sentencepiece(folder: str, style: str) -> Tokenizer:
    """SentencePiece BPE with Llama 2's trainer options (byte fallback, digits split, identity
    normalisation, <unk> <s> </s> at 0 1 2), or Gemma's (no '▁' prepended; newline runs as
    pieces of their own), as transformers' converters write its tokenizer.json: the pieces in id
    order, merges from the piece scores, user-defined pieces as added tokens, the same
    normaliser, pre-tokeniser and decoder."""
    import sentencepiece as spm  # noqa: PLC0415

    prefix = os.path.join(folder, "tokenizer")
    gemma = style == "gemma"
    newlines = ["\n" * k for k in range(1, 4)] if gemma else []
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_lines()), model_prefix=prefix,
                                   vocab_size=700, model_type="bpe", byte_fallback=True,
                                   split_digits=True, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False, unk_id=0, bos_id=1, eos_id=2,
                                   pad_id=-1, minloglevel=2, add_dummy_prefix=not gemma,
                                   user_defined_symbols=newlines)  # fmt: skip
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    merges = []  # transformers' generate_merges: by score, then the longer left, right part
    for piece, score in pieces:
        merges += sorted(((piece[:k], piece[k:], score) for k in range(1, len(piece))
                          if piece[:k] in vocab and piece[k:] in vocab),
                         key=lambda m: (vocab[m[0]], vocab[m[1]]))  # fmt: skip
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    tok = Tokenizer(models.BPE(vocab, [(a, b) for a, b, _ in merges], unk_token="<unk>",
                               fuse_unk=True, byte_fallback=True))  # fmt: skip
    if style == "legacy":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                               normalizers.Replace(" ", "\u2581")])  # fmt: skip
    elif gemma:
        tok.normalizer = normalizers.Replace(" ", "\u2581")
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    tok.decoder = decoders.Sequence(steps if gemma else [*steps, decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.add_tokens([AddedToken(n, normalized=False, special=False) for n in newlines])
    return tok


def save_family(name: str, folder) -> str:
    """Writes `folder/<name>/tokenizer.json` (as a hub snapshot holds it; Llama 2's folder also
    its SentencePiece tokenizer.model); returns the folder."""
    out = os.path.join(os.fspath(folder), name)
    os.makedirs(out, exist_ok=True)
    make = {
        "bert-base-cased": _bert,
        "gpt2": lambda: _byte_level(False, ["<|endoftext|>"]),
        "llama3": lambda: _byte_level(True, ["<|begin_of_text|>", "<|end_of_text|>"]),
        "t5": _t5,
        "llama2": lambda: _sentencepiece(out, "llama2"),
        "llama2-legacy": lambda: _sentencepiece(out, "legacy"),
        "gemma": lambda: _sentencepiece(out, "gemma"),
    }[name]
    make().save(os.path.join(out, "tokenizer.json"))
    return out
