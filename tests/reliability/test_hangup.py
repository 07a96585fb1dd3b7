"""A hangup saves: training in a terminal that goes away (an SSH connection drops, a terminal
window is closed) finishes its step, saves it and stops (exit 129), and the rerun continues
from that step. SIGHUP's default action used to end the run at once, losing every step since
the last checkpoint. Under `nohup` a hangup stays ignored.

The terminal here is a real pseudo-terminal: the run is a session leader with the pty as its
controlling terminal and all three standard streams on it, and closing the master side is what
sshd or a terminal emulator does; the kernel sends the SIGHUP, and writes after it fail.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading

from llp_jax.storage import committed_steps
from tests.helpers import REPO
from tests.helpers.cli import PYTHON, run_cli
from tests.reliability import faults
from tests.reliability.conftest import tiny_args

STEPS, EVERY = 100_000, 100_000  # the run never saves by itself
# A run as a user starts it: SIGHUP at its default action, whatever this test process inherited
# (a test suite started under nohup ignores SIGHUP, and ignored signals survive exec).
TRAIN = ["env", "--default-signal=HUP", PYTHON, "-m", "experiments.train"]


def _in_terminal(args: list[str], env: dict):
    """`python -m experiments.train args...` on a fresh pseudo-terminal it controls; returns the
    process and `hang_up()`, which closes the terminal's master side."""
    master, slave = os.openpty()
    # util-linux's setsid: a new session whose controlling terminal is stdin (the pty), then
    # exec (no fork: the child is not a group leader), so proc.pid is the run's pid.
    proc = subprocess.Popen(["setsid", "--ctty", *TRAIN, *args],
                            cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave)  # fmt: skip
    os.close(slave)
    stop = threading.Event()

    def drain():  # what a terminal does with the output, until it goes away
        while not stop.is_set():
            if select.select([master], [], [], 0.1)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()

    def hang_up():
        stop.set()
        reader.join()  # no read in flight: closing the last reference is the hangup
        os.close(master)

    return proc, hang_up


def test_closing_the_terminal_saves_the_step_and_the_rerun_resumes(tmp_path, env, corpus_file):
    workdir = tmp_path / "run"
    args = tiny_args(workdir, corpus_file, steps=STEPS, every=EVERY)
    proc, hang_up = _in_terminal(args, env)
    reached = faults.wait_for_step(workdir, 5, proc)
    hang_up()
    assert proc.wait(timeout=300) == 129
    saved = committed_steps(workdir / "checkpoints")
    assert len(saved) == 1 and saved[0] >= reached, (saved, reached)
    result = run_cli("train", *tiny_args(workdir, corpus_file, steps=saved[0] + 2, every=EVERY),
                     env=env)  # fmt: skip
    assert result.rc == 0, str(result)
    assert f"resumed from step {saved[0]}" in result.stdout, str(result)


def test_a_hangup_to_a_run_whose_output_is_a_file_saves_and_says_so(tmp_path, env, corpus_file):
    """kill -HUP (or a hangup) with the output redirected: the output is kept, not silenced."""
    workdir = tmp_path / "run"
    proc = subprocess.Popen([*TRAIN, *tiny_args(workdir, corpus_file, steps=STEPS, every=EVERY)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    faults.wait_for_step(workdir, 3, proc)
    proc.send_signal(signal.SIGHUP)
    result = faults.finish(proc)
    assert result.rc == 129, str(result)
    step = committed_steps(workdir / "checkpoints")[-1]
    assert f"SIGHUP: saved step {step}; exiting" in result.stdout, str(result)
    assert "Traceback" not in result.stdout + result.stderr


def test_under_nohup_a_hangup_is_ignored(tmp_path, env, corpus_file):
    workdir = tmp_path / "run"
    steps = 40
    proc = subprocess.Popen(
        ["nohup", PYTHON, "-m", "experiments.train",
         *tiny_args(workdir, corpus_file, steps=steps, every=EVERY)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    faults.wait_for_step(workdir, 3, proc)
    proc.send_signal(signal.SIGHUP)
    result = faults.finish(proc)
    assert result.rc == 0, str(result)
    assert committed_steps(workdir / "checkpoints") == [steps]  # it ran to the end
