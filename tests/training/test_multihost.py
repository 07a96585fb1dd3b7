"""Two CPU processes on 127.0.0.1 (jax.distributed + gloo) train exactly like one process with
the same global batch and the same number of devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(workdir, corpus, *extra):
    return [
        sys.executable, "-m", "experiments.train", "--config=llp_jax/configs/tiny.py:llp",
        f"--workdir={workdir}", f"--config.data.corpus={corpus}", "--config.model.seq_len=64",
        "--config.model.segment_len=16", "--config.model.d_model=32",
        "--config.train.num_steps=4", "--config.train.log_every=1", "--config.train.batch_size=8",
        "--config.train.eval_every=4", "--config.train.eval_batches=1",
        "--config.train.checkpoint_every=2", "--config.sample.num_tokens=4", *extra,
    ]  # fmt: skip


def env(devices: int) -> dict:
    return {
        **os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }  # fmt: skip


def losses(workdir):
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return (
        [r["train/loss"] for r in records if "train/loss" in r],
        [r["val/loss"] for r in records if "val/loss" in r],
    )


@pytest.mark.slow
def test_two_processes_equal_one(corpus_file, tmp_path):
    single = subprocess.run(command(tmp_path / "single", corpus_file), cwd=REPO, env=env(4),
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]

    port = free_port()
    procs = [
        subprocess.Popen(
            command(
                tmp_path / "multi",
                corpus_file,
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ),
            cwd=REPO,
            env=env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "mesh {'data': 4" in outs[0][0]  # 2 processes x 2 devices on one data axis
    assert "validation perplexity" in outs[0][0] and "validation perplexity" not in outs[1][0]

    train_1, val_1 = losses(tmp_path / "single")
    train_2, val_2 = losses(tmp_path / "multi")
    assert len(train_2) == 4 and len(val_2) == 1
    np.testing.assert_allclose(train_2, train_1, rtol=2e-5)
    np.testing.assert_allclose(val_2, val_1, rtol=2e-5)
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints"))[:2] == ["2", "4"]


def _launch_pair(workdir, corpus, steps, port, every=1000):
    """Two processes of one run, their output in files (pipes could fill and block one)."""
    extra = [f"--config.train.num_steps={steps}", "--config.train.schedule=constant",
             f"--config.train.checkpoint_every={every}", "--config.train.eval_every=100000"]  # fmt: skip
    os.makedirs(workdir, exist_ok=True)
    procs = []
    for i in range(2):
        log = open(os.path.join(workdir, f"process{i}.log"), "a")
        args = command(workdir, corpus, *extra, f"--coordinator_address=127.0.0.1:{port}",
                       "--num_processes=2", f"--process_id={i}")  # fmt: skip
        procs.append(subprocess.Popen(args, cwd=REPO, env=env(2), stdout=log,
                                      stderr=subprocess.STDOUT, text=True))  # fmt: skip
    return procs


def _output(workdir, i):
    return open(os.path.join(workdir, f"process{i}.log")).read()


def _logged_steps(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    out = {}
    for line in open(path):
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "train/loss" in r:
            out[r["step"]] = r["train/loss"]
    return out


@pytest.mark.slow
def test_sigterm_to_one_process_stops_every_process_at_one_step(corpus_file, tmp_path):
    """A preemption notice that reaches one host only: both hosts agree on the stop, save the
    same step and exit 0; rerun, they continue with the losses of a straight run."""
    import signal
    import time

    workdir = tmp_path / "preempted"
    procs = _launch_pair(workdir, corpus_file, 100_000, free_port())
    deadline = time.time() + 300
    while max(_logged_steps(workdir), default=0) < 3:
        assert time.time() < deadline, "no progress"
        assert all(p.poll() is None for p in procs), _output(workdir, 0)[-3000:]
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # process 1 only
    start = time.time()
    codes = [p.wait(timeout=120) for p in procs]
    assert time.time() - start < 60, "the processes did not stop together"
    assert codes == [0, 0], _output(workdir, 0)[-2000:] + _output(workdir, 1)[-2000:]
    steps = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
    stopped = max(_logged_steps(workdir))
    assert steps == [stopped]  # one checkpoint, of the step both processes stopped at
    assert f"saved step {stopped}" in _output(workdir, 0)

    end = stopped + 3
    for run in (workdir, tmp_path / "straight"):
        codes = [p.wait(timeout=600) for p in _launch_pair(run, corpus_file, end, free_port())]
        assert codes == [0, 0], _output(run, 0)[-3000:]
    straight = tmp_path / "straight"
    resumed, reference = _logged_steps(workdir), _logged_steps(straight)
    assert sorted(resumed) == list(range(1, end + 1))
    np.testing.assert_array_equal([resumed[s] for s in range(1, end + 1)],
                                  [reference[s] for s in range(1, end + 1)])  # fmt: skip
