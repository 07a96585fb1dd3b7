"""Training a SentencePiece model in memory: the trainer's settings, the lines it is fed, and
which characters get pieces. `sentencepiece_tokenizer.train_sentencepiece` wraps it with the
cache and the `SentencePieceTokenizer` it returns; kept apart so that module stays about
tokenizing.
"""

from __future__ import annotations

import collections
import io
import os
from collections.abc import Iterator

import sentencepiece as spm

# SentencePiece skips training lines longer than max_sentence_length; we cut longer lines instead
# of losing them (a corpus may be one huge line).
_SP_MAX_LINE_CHARS = 4096
_SP_MAX_SENTENCE_BYTES = 4 * _SP_MAX_LINE_CHARS + 16
_SP_SEED = 1234  # SentencePiece's global RNG (sentence sampling); fixed for reproducible models.


def _training_lines(text: str) -> Iterator[str]:
    """Non-empty lines of `text`, long lines cut into chunks SentencePiece will not skip."""
    for line in text.split("\n"):
        for start in range(0, len(line), _SP_MAX_LINE_CHARS):
            chunk = line[start : start + _SP_MAX_LINE_CHARS]
            if chunk.strip():
                yield chunk


# Pieces every model has: 4 specials, '\n' and the 256 byte pieces of byte fallback.
FIXED_PIECES = 4 + 1 + 256
MIN_SP_VOCAB = 300


def _character_budget(text: str, vocab_size: int) -> tuple[set[str] | None, float]:
    """The characters SentencePiece may give pieces of: all of them, or, when the text has more
    distinct characters than half of the vocabulary left beside the fixed pieces (Chinese,
    emoji, ...), the most frequent ones; the rest reach the model as bytes (byte fallback).
    Returns (kept characters or None for all, fraction of the text they cover)."""
    counts = collections.Counter(text)
    counts.pop("\n", None)
    budget = max(1, (vocab_size - FIXED_PIECES) // 2)
    if len(counts) <= budget:
        return None, 1.0
    kept = counts.most_common(budget)
    return {c for c, _ in kept}, sum(n for _, n in kept) / max(sum(counts.values()), 1)


def train_proto(train_text: str, settings: dict) -> bytes:
    """Trains a SentencePiece model in memory on valid UTF-8 text and returns its serialized
    bytes (`settings`: model_type, vocab_size).

    SentencePiece needs a piece for every character it trains on (character_coverage can only go
    down to 0.98), so a text with thousands of distinct characters and a small vocabulary would
    fail; the rare characters are left out of its training text instead, and byte fallback
    encodes them losslessly."""
    text = train_text
    kept, covered = _character_budget(text, settings["vocab_size"])
    if kept is not None:
        text = "".join(c for c in text if c in kept or c == "\n")
        print(
            f"[llp_jax.data] SentencePiece: the {len(kept):,} most frequent characters "
            f"({covered:.2%} of the text) get pieces; rarer ones are encoded as bytes"
        )
    model = io.BytesIO()
    spm.set_random_generator_seed(_SP_SEED)
    spm.SentencePieceTrainer.train(
        sentence_iterator=_training_lines(text),
        model_writer=model,
        model_type=settings["model_type"],
        vocab_size=settings["vocab_size"],
        hard_vocab_limit=False,  # A small corpus gets a smaller vocab rather than an error.
        character_coverage=1.0,
        byte_fallback=True,  # Unseen characters become bytes, never <unk>.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        user_defined_symbols=["\n"],
        max_sentence_length=_SP_MAX_SENTENCE_BYTES,
        input_sentence_size=2_000_000,  # Sample at most this many lines: bounds time on big corpora.
        shuffle_input_sentence=True,
        num_threads=min(2, os.cpu_count() or 1),
        minloglevel=2,
    )
    return model.getvalue()
