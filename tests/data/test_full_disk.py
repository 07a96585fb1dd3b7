"""Data files written on a full disk (a real one: a small tmpfs in a private mount namespace): the
error names the file and leaves no partial file behind, so the launchers print one line."""

import json
import sys

import pytest

from tests.helpers.cli import cli_env
from tests.reliability import faults

PROGRAM = r"""
import errno, json, os, sys
import numpy as np
from llp_jax.data import load_austen, token_cache, tokenizers

disk, what = sys.argv[1], sys.argv[2]
try:
    if what == "tokens":
        pieces = (np.arange(50_000) % 256 for _ in range(20))  # ~2 MB of uint16 tokens
        token_cache.write_split(os.path.join(disk, "tok"), "train", pieces, vocab_size=256,
                                chunk_tokens=4096, counts={})
    else:
        text = load_austen().splits["train"][:300_000]
        tokenizers.train_sentencepiece(text, vocab_size=2000, cache_dir=disk)
    outcome = {"error": None}
except OSError as e:
    outcome = {"error": e.errno == errno.ENOSPC, "filename": e.filename}
outcome["files"] = sorted(os.path.relpath(os.path.join(d, f), disk)
                          for d, _, fs in os.walk(disk) for f in fs)
print(json.dumps(outcome))
"""


@pytest.mark.parametrize("what, written", [("tokens", "tok/train.array_record"),
                                           ("sentencepiece", "sentencepiece/")])  # fmt: skip
def test_a_full_disk_names_the_file_and_leaves_nothing_partial(what, written, tmp_path):
    prefix = faults.namespace_prefix()
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare): cannot make a small disk")
    disk = tmp_path / "disk"
    disk.mkdir()
    result = faults.in_namespace(prefix, f"mount -t tmpfs -o size=32k tmpfs '{disk}'",
                                 [sys.executable, "-c", PROGRAM, str(disk), what],
                                 cli_env())  # fmt: skip
    assert result.rc == 0, str(result)
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["error"] is True, outcome  # ENOSPC, as an OSError
    assert outcome["filename"].startswith(f"{disk}/{written}"), outcome
    assert outcome["files"] == [], outcome  # no temporary or partial file left
