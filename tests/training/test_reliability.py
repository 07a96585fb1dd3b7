"""Nothing is lost: kill -9 and SIGTERM mid-run, damaged checkpoints, non-finite steps, and
one-line errors for every bad configuration rule (raised before any compilation)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llp_jax.errors import LLPError
from llp_jax.training import trainer
from tests.helpers import REPO, small_config

LAUNCH = [sys.executable, "-m", "experiments.train", "--config=llp_jax/configs/tiny.py:llp"]


def launch_args(workdir, corpus, steps, every=2):
    return LAUNCH + [
        f"--workdir={workdir}", f"--config.data.corpus={corpus}", "--config.model.seq_len=64",
        "--config.model.segment_len=16", "--config.model.d_model=32",
        f"--config.train.num_steps={steps}", "--config.train.log_every=1",
        f"--config.train.checkpoint_every={every}", "--config.train.eval_every=1000",
        "--config.train.batch_size=4", "--config.sample.num_tokens=4",
    ]  # fmt: skip


ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONUNBUFFERED": "1"}


def train_losses(workdir):
    """step -> loss, the last record of each step winning (a resumed run rewrites steps)."""
    losses = {}
    for line in open(os.path.join(workdir, "metrics.jsonl")):
        record = json.loads(line)
        if "train/loss" in record:
            losses[record["step"]] = record["train/loss"]
    return losses


def wait_for_step(workdir, step, proc, timeout=300):
    path = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and max(train_losses(workdir), default=0) >= step:
            return
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    raise TimeoutError(f"run did not reach step {step}")


# Interrupted runs are launched far longer than the test lasts, so the kill or the signal always
# lands mid-run however fast the steps are; a constant learning rate makes their first steps those
# of any shorter run, so the rerun may stop a few steps past the interruption and be compared with
# a straight run of that length.
LONG = 100_000
CONSTANT_LR = ["--config.train.schedule=constant"]


def start_long_run(workdir, corpus, every):
    args = launch_args(workdir, corpus, LONG, every=every) + CONSTANT_LR
    return subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def rerun_and_straight_run(workdir, corpus, end, tmp_path):
    """Reruns the interrupted workdir up to step `end`; returns (its stdout, a straight run's
    losses for the same steps)."""
    done = subprocess.run(launch_args(workdir, corpus, end) + CONSTANT_LR, cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    straight = tmp_path / "straight"
    subprocess.run(launch_args(straight, corpus, end) + CONSTANT_LR, cwd=REPO, env=ENV,
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    return done.stdout, train_losses(straight)


@pytest.mark.slow
def test_kill_9_then_rerun_continues_bitwise(corpus_file, tmp_path):
    workdir = tmp_path / "killed"
    proc = start_long_run(workdir, corpus_file, every=2)
    wait_for_step(workdir, 7, proc)
    proc.kill()  # SIGKILL: no handler runs, an async save may be cut off half-written
    proc.wait()
    before = train_losses(workdir)
    end = max(before) + 3
    out, straight = rerun_and_straight_run(workdir, corpus_file, end, tmp_path)
    assert "resumed from step" in out
    resumed_from = int(out.split("resumed from step ")[1].split()[0])
    assert 2 <= resumed_from <= max(before)
    assert before == {step: straight[step] for step in before}  # the killed run, bitwise
    assert train_losses(workdir) == straight  # and the rerun, every step bitwise


@pytest.mark.slow
def test_sigterm_saves_and_exits_zero(corpus_file, tmp_path):
    workdir = tmp_path / "preempted"
    proc = start_long_run(workdir, corpus_file, every=LONG)
    wait_for_step(workdir, 3, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    saved = int(out.split("SIGTERM: saved step ")[1].split(";")[0])
    assert 3 <= saved < LONG
    assert os.path.isdir(workdir / "checkpoints" / str(saved)), (
        os.listdir(workdir / "checkpoints"),
        out[-3000:],
    )
    out, straight = rerun_and_straight_run(workdir, corpus_file, saved + 3, tmp_path)
    assert f"resumed from step {saved}" in out
    assert train_losses(workdir) == straight  # every step, bitwise


@pytest.mark.parametrize("signum, ignored", [
    (signal.SIGUSR1, False), (signal.SIGUSR2, False), (signal.SIGUSR1, True),
])  # fmt: skip
def test_a_schedulers_warning_signal_saves_and_exits_zero(signum, ignored, corpus_file, tmp_path):
    """SIGUSR1/2 are a batch scheduler's warning before it stops a job (SLURM's
    --signal=USR1@90, Grid Engine's -notify, LSF's warning action): the run saves its step and
    exits 0, as on SIGTERM (their default action ended it at once, every step since the last
    checkpoint lost). A run started with the signal ignored (a wrapper's trap) stays deaf to it."""
    workdir = tmp_path / "warned"
    args = launch_args(workdir, corpus_file, LONG, every=LONG) + CONSTANT_LR
    if ignored:
        args = ["bash", "-c", f'trap "" {signal.Signals(signum).name[3:]}; exec "$@"', "_", *args]
    proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for_step(workdir, 3, proc)
    proc.send_signal(signum)
    if ignored:
        reached = max(train_losses(workdir))
        wait_for_step(workdir, reached + 3, proc)  # it went on
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    name = "SIGTERM" if ignored else signal.Signals(signum).name
    saved = int(out.split(f"{name}: saved step ")[1].split(";")[0])
    assert sorted(int(p) for p in os.listdir(workdir / "checkpoints") if p.isdigit()) == [saved]


def test_damaged_newest_checkpoint_resumes_from_previous(corpus_file, tmp_path, caplog):
    config = small_config(corpus_file, num_steps=4, checkpoint_every=2)
    run = trainer.setup(config, str(tmp_path))
    trainer.train_loop(run)
    run.ckpt.close()
    newest = tmp_path / "checkpoints" / "4" / "state"
    for root, _, files in os.walk(newest):
        for name in files:
            if os.path.getsize(os.path.join(root, name)) > 64:
                with open(os.path.join(root, name), "r+b") as f:
                    f.truncate(16)
    with caplog.at_level("WARNING"):
        resumed = trainer.setup(config, str(tmp_path))
    assert resumed.start_step == 2
    assert any("step 4" in r.getMessage() for r in caplog.records)


def poison_token(run, byte):
    """Sets the embedding row of one byte to NaN: every batch containing it is non-finite."""
    params = run.state["params"]
    embed = params["embed"]
    embed.set_value(embed.get_value().at[byte].set(jnp.nan))


def test_nan_stops_with_step_and_keeps_checkpoint(corpus_file, tmp_path):
    config = small_config(corpus_file, num_steps=2, checkpoint_every=2)
    run = trainer.setup(config, str(tmp_path))
    trainer.train_loop(run)
    run.ckpt.close()
    config.train.num_steps = 6
    run = trainer.setup(config, str(tmp_path))
    before = jax.device_get(run.state["params"]["first_block"]["ff"]["w_in"].get_value())
    poison_token(run, ord(" "))  # in every batch
    with pytest.raises(trainer.NonFiniteError, match=r"at step 3 .*last checkpoint \(step 2\)"):
        trainer.train_loop(run)
    run.ckpt.close()
    assert sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit()) == [2]
    after = jax.device_get(run.state["params"]["first_block"]["ff"]["w_in"].get_value())
    np.testing.assert_array_equal(before, after)  # the bad update was never applied


def test_nan_before_any_checkpoint_says_so_and_names_the_fix(corpus_file, tmp_path):
    """A run that goes non-finite before its first checkpoint (too high a learning rate, at
    once) has no step to name: the error says none was written and what to change."""
    config = small_config(corpus_file, num_steps=2, checkpoint_every=2)
    run = trainer.setup(config, str(tmp_path))
    poison_token(run, ord(" "))
    with pytest.raises(trainer.NonFiniteError) as raised:
        trainer.train_loop(run)
    run.ckpt.close()
    message = str(raised.value)
    assert "None" not in message and "no checkpoint was written yet" in message, message
    assert "train.learning_rate" in message and "train.max_bad_steps" in message, message


def test_nan_batches_skipped_up_to_max_bad_steps(corpus_file, tmp_path):
    config = small_config(corpus_file, num_steps=6, max_bad_steps=100)
    run = trainer.setup(config, str(tmp_path), resume=False)
    peek = run.data.train_iterator(8)  # the same batches the run will see
    present = [set(np.unique(next(peek)["inputs"])) for _ in range(6)]
    byte = next(b for b in range(256) if 2 <= sum(b in p for p in present) <= 4)
    poison_token(run, byte)  # only in some of the six batches
    trainer.train_loop(run)
    run.ckpt.close()
    bad = int(run.state["bad_steps"])
    assert 0 < bad < 6
    finite = [np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(run.state["params"]))]
    assert sum(not f for f in finite) == 1  # only the poisoned embedding table


BAD_CONFIGS = [
    ("model.segment_len", dict(model=dict(segment_len=24))),
    ("model.latent_len", dict(model=dict(name="perceiver_ar", segment_len=0, latent_len=100))),
    (
        "model.compressed_len",
        dict(model=dict(name="enhanced_v3", segment_len=0, latent_len=16, compressed_len=48)),
    ),  # fmt: skip
    ("model.name", dict(model=dict(name="mamba"))),
    ("model.num_heads", dict(model=dict(num_heads=5))),
    ("mesh config", dict(mesh=dict(data=3, fsdp=1, tensor=1))),
    ("train.batch_size", dict(mesh=dict(data=8, fsdp=1, tensor=1), train=dict(batch_size=12))),
    ("train.batch_size", dict(train=dict(batch_size=8, grad_accum_steps=3))),
]


@pytest.mark.parametrize("field,changes", BAD_CONFIGS, ids=[f"{f}-{i}" for i, (f, _) in
                                                            enumerate(BAD_CONFIGS)])  # fmt: skip
def test_bad_config_one_line_error_before_compiling(corpus_file, tmp_path, field, changes,
                                                    monkeypatch):  # fmt: skip
    config = small_config(corpus_file)
    for section, values in changes.items():
        config[section].update(values)
    compiled = []
    monkeypatch.setattr(jax, "jit", lambda *a, **k: compiled.append(a) or (lambda *x: None))
    with pytest.raises(LLPError) as err:
        trainer.setup(config, str(tmp_path))
    message = str(err.value)
    assert field in message and "\n" not in message
    assert not compiled


def test_launcher_prints_one_line_error(corpus_file, tmp_path):
    args = launch_args(tmp_path, corpus_file, 2) + ["--config.model.segment_len=24"]
    proc = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: model.segment_len=24")
    assert "Traceback" not in proc.stderr


def test_missing_corpus_one_line_error(tmp_path):
    args = launch_args(tmp_path, str(tmp_path / "nope.txt"), 2)
    proc = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "nope.txt" in proc.stderr.strip().splitlines()[-1]
    shutil.rmtree(tmp_path, ignore_errors=True)
