"""Hypothesis fuzzing of the checkpoint readers: random bytes, and the real fixtures (zip,
legacy, safetensors) cut short or with bytes changed, give a one-line error of the reader's
own or a state dict, never another exception, and never run code."""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llp_jax.errors import LLPError
from llp_jax.interop import authors
from tests.interop.test_authors import FIXTURES, VARIANTS

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILES = {name: open(os.path.join(FIXTURES, file), "rb").read()
         for name, file in [("zip", "ECPAttention_plain.pt"), ("legacy", VARIANTS["legacy"]),
                            ("safetensors", VARIANTS["safetensors"])]}  # fmt: skip


def _read(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "f.pt")
        with open(path, "wb") as f:
            f.write(raw)
        try:
            authors.read_checkpoint(path)
        except LLPError as e:
            assert "\n" not in str(e) and path in str(e)


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes(raw):
    _read(raw)


@FUZZ
@given(st.sampled_from(list(FILES)), st.floats(0, 1), st.lists(st.tuples(st.floats(0, 1),
       st.integers(0, 255)), max_size=6))  # fmt: skip
def test_real_files_cut_short_or_changed(name, keep, changes):
    raw = bytearray(FILES[name][: max(1, int(len(FILES[name]) * keep))])
    for where, value in changes:
        raw[min(int(where * len(raw)), len(raw) - 1)] = value
    _read(bytes(raw))
