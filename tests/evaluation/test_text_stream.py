"""A sample printed as it grows reads exactly as the one decoded at its end: `TextStream`'s
pieces, for blocks of any sizes, add up to `tokenizer.decode` of all the ids, for the byte
tokenizer (UTF-8 characters split across blocks, invalid bytes, specials, Windows newlines) and
for SentencePiece models with and without a newline piece (words split across blocks, the space
SentencePiece drops at the start of a text, byte-fallback pieces)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import sentencepiece as spm

from llp_jax.data import tokenizers as tk
from llp_jax.evaluation.text_stream import TextStream
from tests.data.test_tokenizers import small_text

TEXT = "h\u00e9llo w\u00f6rld\r\n \U0001f600 ok\n\nline\r\n  two  spaces\u2581mark \u4e2d\u6587\n"


def _pieces(tokenizer, ids, seed):
    rng = np.random.default_rng(seed)
    stream, out, i = TextStream(tokenizer), [], 0
    while i < len(ids):
        k = int(rng.integers(1, 9))
        out.append(stream.feed(ids[i : i + k]))
        i += k
    return out + [stream.finish()]


def _check(tokenizer, ids, seed):
    pieces = _pieces(tokenizer, np.asarray(ids, np.int32), seed)
    assert "".join(pieces) == tokenizer.decode(ids)
    return pieces


def test_byte_streams_add_up_to_the_decoded_text():
    tok = tk.ByteTokenizer()
    rng = np.random.default_rng(0)
    text_ids = tok.encode(TEXT * 3)
    for seed in range(50):
        noise = rng.integers(0, tok.vocab_size, 120)  # invalid UTF-8, PAD/BOS/EOS, newlines
        _check(tok, np.concatenate([text_ids, noise, text_ids]), seed)
    pieces = _check(tok, tok.encode("\u00e9" * 4), 1)
    assert "\ufffd" not in "".join(pieces)  # half a character is held back, never shown


@pytest.fixture(scope="module")
def sp_models(tmp_path_factory):
    """A model trained as the project trains them (a '\\n' piece: decoded line by line) and one
    as other tools do (no newline piece: decoded whole)."""
    cache = str(tmp_path_factory.mktemp("sp"))
    ours = tk.make_tokenizer("sentencepiece", vocab_size=320, train_text=small_text(),
                             cache_dir=cache)  # fmt: skip
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(small_text().splitlines()),
                                   vocab_size=300, byte_fallback=True, model_writer=writer)  # fmt: skip
    theirs = tk.SentencePieceTokenizer(writer.getvalue(), name="other")
    assert ours.newline_id is not None and theirs.newline_id is None
    return ours, theirs


@pytest.mark.parametrize("which", [0, 1], ids=["with_newline_piece", "without"])
def test_sentencepiece_streams_add_up_to_the_decoded_text(sp_models, which):
    tok = sp_models[which]
    text_ids = tok.encode(small_text(seed=3, lines=30) + TEXT)
    rng = np.random.default_rng(1)
    for seed in range(20):
        _check(tok, text_ids, seed)
        _check(tok, rng.integers(0, tok.vocab_size, 200), seed)  # any ids a model may sample


@pytest.mark.parametrize(
    "family", ["bert-base-cased", "gpt2", "llama3", "t5", "llama2", "llama2-legacy"]
)
def test_hugging_face_streams_add_up_to_the_decoded_text(family, tmp_path):
    """A tokenizer.json's sample (hf_tokenizer.py): WordPiece's '##' pieces, byte-level BPE's
    characters split across ids, Llama 2's lines (a decoder that strips the space opening a
    text) and T5's (no newline id: decoded whole) add up the same."""
    pytest.importorskip("tokenizers")
    from tests.helpers.hf_tokenizers import save_family  # noqa: PLC0415

    tok = tk.make_tokenizer(save_family(family, tmp_path))
    text_ids = tok.encode(small_text(seed=3, lines=30) + TEXT)
    rng = np.random.default_rng(2)
    for seed in range(10):
        _check(tok, text_ids, seed)
        _check(tok, rng.integers(0, tok.vocab_size, 200), seed)
