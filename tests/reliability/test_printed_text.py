"""Text a program prints that it did not choose, through the real CLIs: a sample holding control
characters (an undertrained byte model emits any byte; a prompt may hold anything) prints them
escaped (`sample_settings.shown`), the record of it stays exact, and a stdout whose encoding
cannot write a character (PYTHONIOENCODING=ascii, a Latin-1 locale) gets a backslash escape
instead of a traceback."""

from __future__ import annotations

import codecs
import json
import re
import shutil
import unicodedata

import pytest

from llp_jax.evaluation.sample_settings import shown
from tests.helpers.cli import run_cli
from tests.reliability.conftest import tiny_args

# ESC (a colour sequence), SO (line-drawing glyphs), BEL, a Windows newline, a right-to-left
# override, and characters outside ASCII.
PROMPT = "caf\u00e9 \x1b[31mred\x0e\x07 a\r\nb \u202eZ \U0001f600"
SHOWN = "caf\u00e9 \\x1b[31mred\\x0e\\x07 a\nb \\u202eZ \U0001f600"
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_samples_print_control_characters_escaped(victim, env, encoding):
    result = run_cli("sample", f"--workdir={victim}", f"--prompt={PROMPT}",
                     "--max_new_tokens=64", "--temperature=1.0",
                     env=dict(env, PYTHONIOENCODING=encoding))  # fmt: skip
    assert result.rc == 0, str(result)
    raw = result.stdout.encode(errors="surrogateescape")
    assert not _CONTROL_BYTES.search(raw), raw
    body = result.stdout.split("--- sample 0\n", 1)[1]
    if encoding == "ascii":  # what the encoding cannot write is escaped too
        assert body.isascii(), body
        assert body.startswith(SHOWN.encode("ascii", "backslashreplace").decode()), body
    else:
        assert body.startswith(SHOWN), body


@pytest.mark.slow
def test_the_end_of_run_sample_is_shown_escaped_and_kept_exact(env, tmp_path, corpus_file):
    workdir = tmp_path / "run"
    args = tiny_args(workdir, corpus_file, steps=2, sample__prompt=PROMPT, sample__num_tokens=16)
    result = run_cli("train", *args, env=dict(env, PYTHONIOENCODING="ascii"))
    assert result.rc == 0, str(result)
    assert result.stdout.isascii() and "\\x1b[31mred\\x0e\\x07" in result.stdout, result.stdout
    assert not _CONTROL_BYTES.search(result.stdout.encode()), result.stdout
    summary = json.load(open(workdir / "summary.json"))
    assert summary["sample"].startswith(PROMPT)  # the record is exact


def test_paths_outside_the_output_encoding_print_escaped(victim, env, tmp_path):
    workdir = tmp_path / "caf\u00e9 run"
    shutil.move(victim, workdir)
    result = run_cli("evaluate", f"--workdir={workdir}", "--protocols=standard",
                     "--max_tokens=600", env=dict(env, PYTHONIOENCODING="ascii"))  # fmt: skip
    assert result.rc == 0, str(result)
    assert "caf\\xe9 run" in result.stdout and result.stdout.isascii(), result.stdout


def test_shown_escapes_every_control_character_and_nothing_else():
    characters = [chr(c) for c in (*range(0x00, 0x250), *range(0x2000, 0x2070), 0x1F600)]
    for c in characters:
        out = shown(c)
        control = unicodedata.category(c) == "Cc" and c not in "\n\t"
        bidi = "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069"
        if control or bidi:
            assert out.isascii() and out.startswith("\\") and out.isprintable(), (c, out)
            assert codecs.decode(out, "unicode_escape") == c
        else:
            assert out == c, (hex(ord(c)), out)
    assert shown("a\r\nb\rc") == "a\nb\\rc"
