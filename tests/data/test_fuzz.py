"""Hypothesis fuzzing: arbitrary bytes and text never crash or hang the loader or the tokenizers."""

import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llp_jax.data import text_bytes, user_text
from llp_jax.data import tokenizers as tk
from llp_jax.data.corpus import DataError

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def sp_tok(tmp_path_factory):
    text = "\n".join(f"line {i}: the quick brown fox {i * 7} jumps" for i in range(300))
    return tk.make_tokenizer(
        "sentencepiece",
        vocab_size=320,
        train_text=text,
        cache_dir=str(tmp_path_factory.mktemp("sp_fuzz")),
    )


@FUZZ
@given(st.binary(max_size=2000))
def test_text_loader_never_crashes_on_random_bytes(raw):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fuzz.txt")
        with open(path, "wb") as f:
            f.write(raw)
        try:
            text = user_text.read_text_file(path)
        except DataError as e:  # Only the documented rejections: empty, binary, not UTF-8.
            assert "\n" not in str(e)
            invalid = len(raw.decode("utf-8", errors="replace")) != len(
                raw.decode("utf-8", errors="ignore"))  # fmt: skip
            named = text_bytes.not_text_format(raw)  # a PDF, a RAR archive, ...
            assert not raw.strip() or b"\x00" in raw or invalid or named
            return
        assert isinstance(text, str) and "\r" not in text
        text.encode("utf-8")  # Always valid UTF-8 afterwards.


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_tokenizers_never_crash_on_random_bytes(sp_tok, raw):
    # surrogateescape yields lone surrogates, the worst a Python str can hold.
    text = raw.decode("utf-8", errors="surrogateescape")
    for tok in (tk.ByteTokenizer(), sp_tok):
        ids = tok.encode(text)
        assert ids.dtype == np.int32
        assert isinstance(tok.decode(ids), str)


@FUZZ
@given(text=st.text(max_size=300))
def test_tokenizers_round_trip_unicode(sp_tok, text):
    assert tk.ByteTokenizer().decode(tk.ByteTokenizer().encode(text)) == text
    # SentencePiece's only lossy character is its own space marker U+2581.
    assert sp_tok.decode(sp_tok.encode(text)) == text.replace("\u2581", " ")


@FUZZ
@given(ids=st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), max_size=200))
def test_decode_never_crashes_on_random_ids(sp_tok, ids):
    for tok in (tk.ByteTokenizer(), sp_tok):
        assert isinstance(tok.decode(ids), str)
        assert isinstance(tok.decode(np.asarray(ids, dtype=np.int64)), str)
