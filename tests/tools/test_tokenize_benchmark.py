"""The tokenisation benchmark runs end to end at a toy size, and its table says what it
measured: llp_jax's ids for a tokenizer.json are the library's whole-text ids (each line alone
is not, for Llama 2), and documents many per call give the same tokens as one call each."""

import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytest.importorskip("tokenizers")


def test_tokenize_benchmark_smoke(tmp_path):
    out = tmp_path / "tokenize.md"
    done = subprocess.run([sys.executable, "tools/tokenize_benchmark.py", "--chars=200000",
                           "--rounds=1", f"--out={out}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text()
    rows = {tuple(c.strip() for c in row.split("|")[1:3]): row.split("|")[3:-1]
            for row in table.splitlines() if row.startswith("| ") and "---" not in row}  # fmt: skip
    for family in ("gpt2", "llama2-legacy"):
        assert rows[family, "llp_jax (pieces)"][-1].strip() == "True"
        assert rows[family, "library, whole text"][-1].strip() == "True"
    assert rows["llama2-legacy", "each line alone (before)"][-1].strip() == "False"
    counts = re.findall(r"\| (?:tokenizers.encode_texts|one encode call).* \| ([\d,]+) \|", table)
    assert len(counts) == 2 and counts[0] == counts[1]
