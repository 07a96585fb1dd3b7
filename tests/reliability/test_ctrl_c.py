"""Ctrl-C during training, from the command line and from Python: the step in flight is saved
(exit 130; from Python, `TrainingInterrupted` is raised after the save), a second Ctrl-C aborts at
once with every checkpoint on disk whole, and one before the first step is one line. Each case
runs a real program as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess

from llp_jax.storage import committed_steps, inspect_step
from tests.helpers import REPO
from tests.helpers.cli import PYTHON, assert_one_line_error
from tests.reliability import faults
from tests.reliability.conftest import params_digest, tiny_args


def test_ctrl_c_saves_the_step_and_exits_130(env, victim, corpus_file):
    run = faults.launch(tiny_args(victim, corpus_file, steps=10_000, every=10_000), env)
    faults.wait_for_step(victim, 6, run)
    run.send_signal(signal.SIGINT)
    result = faults.finish(run)
    assert result.rc == 130 and "Traceback" not in result.stdout + result.stderr, str(result)
    saved = int(result.stdout.split("SIGINT: saved step ")[1].split(";")[0])
    assert committed_steps(os.path.join(victim, "checkpoints"))[-1] == saved > 4
    assert max(faults.metrics_steps(victim)) == saved  # the rows up to the saved step
    # A second Ctrl-C aborts at once: no save, the checkpoints on disk whole.
    run = faults.launch(tiny_args(victim, corpus_file, steps=10_000, every=10_000), env)
    faults.wait_for_step(victim, saved + 2, run)
    run.send_signal(signal.SIGINT)
    run.send_signal(signal.SIGINT)
    result = faults.finish(run)
    assert result.rc in (-signal.SIGINT, 130) and "Traceback" not in result.stderr, str(result)
    for step in committed_steps(os.path.join(victim, "checkpoints")):
        assert inspect_step(os.path.join(victim, "checkpoints", str(step))) is None
    assert params_digest(victim)  # the newest step restores


# As a notebook cell runs it: what follows the call must not run after a Ctrl-C.
_API_SCRIPT = """
import sys
import llp_jax
config = llp_jax.configs.load("llp_jax/configs/tiny.py:llp")
for field, value in (f.split("=", 1) for f in sys.argv[2:]):
    section, name = field.removeprefix("--config.").split(".")
    config[section][name] = type(config[section][name])(value)
try:
    llp_jax.train_and_evaluate(config, sys.argv[1].removeprefix("--workdir="))
except llp_jax.TrainingInterrupted as e:
    print("interrupted:", e, e.step, flush=True)
    raise
print("the next statement ran", flush=True)
"""


def test_ctrl_c_in_python_saves_then_raises_keyboard_interrupt(env, victim, corpus_file):
    """From Python (a notebook cell, a script), Ctrl-C used to save and return as if the run
    had finished: the cell went on, and "Run all" evaluated the half-trained model."""
    args = tiny_args(victim, corpus_file, steps=10_000, every=10_000)[1:]  # no --config file
    run = subprocess.Popen([PYTHON, "-c", _API_SCRIPT, *args], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    faults.wait_for_step(victim, 6, run)
    run.send_signal(signal.SIGINT)
    result = faults.finish(run)
    assert "the next statement ran" not in result.stdout, str(result)
    line = next(x for x in result.stdout.splitlines() if x.startswith("interrupted: "))
    saved = int(line.split()[-1])
    assert f"Ctrl-C: saved step {saved} in {victim}; train again to resume" in line
    assert committed_steps(os.path.join(victim, "checkpoints"))[-1] == saved > 4
    assert "TrainingInterrupted: Ctrl-C: saved step" in result.stderr, result.stderr[-500:]


def test_ctrl_c_before_the_first_step_is_one_line(env, tmp_path, corpus_file):
    run = faults.launch(tiny_args(tmp_path / "w", corpus_file), env)
    while not os.path.exists(tmp_path / "w" / ".lock") and run.poll() is None:
        pass  # set-up has begun
    run.send_signal(signal.SIGINT)
    result = faults.finish(run)
    if result.rc != 0:  # (unless it finished first)
        assert_one_line_error(result, "interrupted", rc=130)
