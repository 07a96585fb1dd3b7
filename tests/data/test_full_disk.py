"""Data files written on a full disk (a real one: a small tmpfs in a private mount namespace): the
error names the file and leaves no partial file behind, so the launchers print one line. A cache
(the SentencePiece model cache) is skipped instead: the run goes on, nothing partial is left."""

import json
import os
import sys

import pytest

from tests.helpers.cli import cli_env
from tests.reliability import faults

PROGRAM = r"""
import errno, functools, http.server, json, os, sys, threading
import numpy as np
from llp_jax.data import builder_utils, load_austen, token_cache, tokenizers

disk, what, served = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    if what == "download":  # from a real HTTP server on this machine
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=served)
        handler.log_message = lambda *a: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/big.zip"
        builder_utils.download(url, os.path.join(disk, "downloads"), hint="h")
    elif what == "tokens":
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
                                           ("sentencepiece", None),
                                           ("download", "downloads/big.zip")])  # fmt: skip
def test_a_full_disk_names_the_file_and_leaves_nothing_partial(what, written, tmp_path):
    prefix = faults.namespace_prefix()
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare): cannot make a small disk")
    disk, served = tmp_path / "disk", tmp_path / "served"
    disk.mkdir()
    served.mkdir()
    (served / "big.zip").write_bytes(os.urandom(1 << 20))
    result = faults.in_namespace(prefix, f"mount -t tmpfs -o size=32k tmpfs '{disk}'",
                                 [sys.executable, "-c", PROGRAM, str(disk), what, str(served)],
                                 cli_env())  # fmt: skip
    assert result.rc == 0, str(result)
    outcome = json.loads(result.stdout.splitlines()[-1])
    if written is None:  # a cache: not written, said in a warning, the program goes on
        assert outcome["error"] is None and "could not cache" in result.stderr, str(result)
    else:
        assert outcome["error"] is True, outcome  # ENOSPC, as an OSError
        assert outcome["filename"].startswith(f"{disk}/{written}"), outcome
    assert outcome["files"] == [], outcome  # no temporary or partial file left
