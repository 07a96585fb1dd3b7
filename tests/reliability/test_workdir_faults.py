"""The workdir as a database: one owner, fresh runs that never mix with old ones, damaged steps
skipped by every program, a full disk or a read-only folder met with one line, and the last good
checkpoint always intact. Each case runs the real programs as subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess

import pytest

from llp_jax.storage import committed_steps
from tests.helpers import REPO
from tests.helpers.cli import PYTHON, assert_one_line_error, run_cli
from tests.reliability import faults
from tests.reliability.conftest import params_digest, tiny_args


def test_noresume_sets_the_previous_run_aside(server, victim, trained, corpus_file):
    result = server.run("train", *tiny_args(victim, corpus_file, steps=2), "--noresume")
    assert result.rc == 0, str(result)
    assert "the previous run in" in result.stdout
    assert committed_steps(os.path.join(victim, "checkpoints")) == [2]
    assert faults.metrics_steps(victim) == [1, 2]  # one row per step, the new run's only
    (aside,) = os.listdir(os.path.join(victim, "previous_runs"))
    old = os.path.join(victim, "previous_runs", aside)
    assert committed_steps(os.path.join(old, "checkpoints")) == [2, 4]
    assert params_digest(old, 4) == trained["digest"][4]  # nothing of the old run lost
    assert faults.metrics_steps(old) == [1, 2, 3, 4]
    evaluated = server.run("evaluate", f"--workdir={victim}", "--max_tokens=600")
    assert evaluated.rc == 0 and "checkpoint step 2 in" in evaluated.stdout, str(evaluated)


@pytest.mark.parametrize("damage", sorted(faults.DAMAGE))
def test_every_program_skips_a_damaged_newest_step(damage, server, victim, trained, corpus_file):
    faults.DAMAGE[damage](os.path.join(victim, "checkpoints", "4"))
    for program, args in (("evaluate", ["--max_tokens=600", "--protocols=standard"]),
                          ("sample", ["--max_new_tokens=4"])):  # fmt: skip
        result = server.run(program, f"--workdir={victim}", *args)
        assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
        if damage != "empty_data_iterator":  # readers never read the iterator
            assert "checkpoint step 2 in" in result.stdout, str(result)
            assert "damaged checkpoint step 4" in result.stderr, str(result)
    result = server.run("train", *tiny_args(victim, corpus_file))
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
    assert "resumed from step 2" in result.stdout and "damaged checkpoint step 4" in result.stderr
    assert params_digest(victim, 2) == trained["digest"][2]
    assert committed_steps(os.path.join(victim, "checkpoints")) == [2, 4]  # 4 written again
    assert os.listdir(os.path.join(victim, "damaged_checkpoints"))  # the damaged one kept


def test_noresume_and_fine_tuning_past_a_damaged_step(server, victim, corpus_file, tmp_path):
    faults.garble_metrics(os.path.join(victim, "checkpoints", "4"))
    tuned = tmp_path / "tuned"
    result = server.run("train", *tiny_args(tuned, corpus_file, steps=1,
                                            train__init_from=victim))  # fmt: skip
    assert result.rc == 0 and "weights of step 2" in result.stdout, str(result)
    result = server.run("train", *tiny_args(victim, corpus_file, steps=2), "--noresume")
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)


def test_no_intact_step_is_one_line(server, victim, corpus_file):
    for step in ("2", "4"):
        faults.random_bytes_everywhere(os.path.join(victim, "checkpoints", step))
    for program in ("evaluate", "sample"):
        assert_one_line_error(server.run(program, f"--workdir={victim}"), "no intact checkpoint")
    result = server.run("train", *tiny_args(victim, corpus_file))
    assert_one_line_error(result, "no intact checkpoint", "--noresume")


@pytest.fixture(params=["flock", "no_flock"])
def lock_env(request, env, tmp_path_factory):
    """The programs' environment on a filesystem with file locks, and (no_flock) on one
    without: flock() fails with ENOSYS, as on Lustre mounted without -o flock (NFS without its
    lock daemon: ENOLCK). The second is a libc shim preloaded into the programs (the
    kernel's own answer on such a mount); a training run used to end in flock's traceback."""
    if request.param == "flock":
        return env
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler for the flock shim")
    folder = tmp_path_factory.mktemp("no_flock")
    source = folder / "no_flock.c"
    source.write_text("#include <errno.h>\nint flock(int fd, int op) "
                      "{ (void)fd; (void)op; errno = ENOSYS; return -1; }\n")  # fmt: skip
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(folder / "no_flock.so"),
                    str(source)], check=True)  # fmt: skip
    return {**env, "LD_PRELOAD": str(folder / "no_flock.so")}


def test_a_second_trainer_is_refused_at_once(lock_env, victim, corpus_file):
    env = lock_env
    owner = faults.launch(tiny_args(victim, corpus_file, steps=10_000, every=10_000), env)
    try:
        faults.wait_for_step(victim, 6, owner)
        second = run_cli("train", *tiny_args(victim, corpus_file, steps=10_000), env=env)
        assert_one_line_error(second, "in use by another training run", f"process {owner.pid}")
        owner.send_signal(signal.SIGTERM)
        result = faults.finish(owner)
        assert result.rc == 0, str(result)
        if "LD_PRELOAD" in env:  # said once, as a warning, not an error
            assert "this filesystem has no file locks" in result.stderr, str(result)
    finally:
        owner.kill()
    # The lock of a process killed -9 is released by the kernel: no stale lock.
    dead = faults.launch(tiny_args(victim, corpus_file, steps=10_000, every=10_000), env)
    faults.wait_for_step(victim, 7, dead)
    dead.kill()
    dead.wait()
    result = run_cli("train", *tiny_args(victim, corpus_file, steps=8), env=env)
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)


def test_evaluating_beside_a_trainer_that_deletes_steps(env, server, victim, corpus_file):
    owner = faults.launch(tiny_args(victim, corpus_file, steps=10_000, every=1,
                                    train__keep_checkpoints=1), env)  # fmt: skip
    try:
        faults.wait_for_step(victim, 6, owner)
        for _ in range(6):
            result = server.run("evaluate", f"--workdir={victim}", "--max_tokens=300",
                                "--protocols=standard", "--out=/dev/null")  # fmt: skip
            assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
        assert stat.S_ISCHR(os.stat(os.devnull).st_mode)  # written into, not renamed over
        owner.send_signal(signal.SIGTERM)
        assert faults.finish(owner).rc == 0
    finally:
        owner.kill()


def test_a_validation_split_shorter_than_one_window(server, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(20):  # document 18 is the validation split (user_text: i % 20 == 18)
        (folder / f"{i:02d}.txt").write_text("short." if i == 18 else "Some words. " * 400)
    result = server.run("train", *tiny_args(tmp_path / "w", str(folder)))
    assert_one_line_error(result, "validation split", "tokens", "model.seq_len=64")
    assert not (tmp_path / "w" / "checkpoints").exists()


def _step_bytes(workdir, step) -> int:
    root = os.path.join(workdir, "checkpoints", str(step))
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)


def test_a_full_disk_stops_the_run_with_one_line(env, trained, corpus_file, tmp_path):
    prefix = faults.namespace_prefix()
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare): cannot make a small disk")
    # Room for the data record, the logs and one checkpoint, not for a second.
    size_kb = (_step_bytes(trained["dir"], 2) * 3 // 2 + 400_000) // 1024
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    command = [PYTHON, "-m", "experiments.train", *tiny_args(disk / "w", corpus_file, steps=40,
                                                             every=2)]  # fmt: skip
    result = faults.in_namespace(prefix, f"mount -t tmpfs -o size={size_kb}k tmpfs '{disk}'",
                                 command, env, after=f"cp -a '{disk}/w' '{kept}'")  # fmt: skip
    # Whichever write meets the full disk first (a checkpoint, the metrics log, the TensorBoard
    # events), the line names the path and the cause.
    line = assert_one_line_error(result, "no space left on device")
    assert f"{disk}/w" in line, line
    good = committed_steps(kept / "checkpoints")
    assert good and good[-1] < 40
    # The run stopped at the failed save (found at the next step boundary: saves are
    # asynchronous), and the last good step resumes once there is room.
    assert max(faults.metrics_steps(kept)) <= good[-1] + 2 * 2
    resumed = run_cli("train", *tiny_args(kept, corpus_file, steps=good[-1] + 2), env=env)
    assert resumed.rc == 0 and f"resumed from step {good[-1]}" in resumed.stdout, str(resumed)


def test_a_read_only_workdir_is_one_line(env, victim, corpus_file, tmp_path):
    prefix = faults.namespace_prefix()
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare): cannot mount read-only")
    before = params_digest(victim)
    ro = f"mount --bind '{victim}' '{victim}'\nmount -o remount,bind,ro '{victim}'"
    train = [PYTHON, "-m", "experiments.train", *tiny_args(victim, corpus_file, steps=6)]
    assert_one_line_error(faults.in_namespace(prefix, ro, train, env), "read-only file system")
    evaluate = [PYTHON, "-m", "experiments.evaluate", f"--workdir={victim}", "--max_tokens=300"]
    result = faults.in_namespace(prefix, ro, evaluate, env)
    assert_one_line_error(result, "eval_validation.json", "read-only file system", "--out=")
    assert "| standard |" not in result.stdout  # said before the evaluation, not after it
    parent = tmp_path / "ro_parent"
    parent.mkdir()
    ro = f"mount --bind '{parent}' '{parent}'\nmount -o remount,bind,ro '{parent}'"
    train = [PYTHON, "-m", "experiments.train", *tiny_args(parent / "new", corpus_file)]
    assert_one_line_error(faults.in_namespace(prefix, ro, train, env), "read-only file system")
    assert params_digest(victim) == before


def test_unreadable_files_are_one_line(env, corpus_file):
    with faults.as_nobody(env) as (prefix, shared, env):
        readable, secret = os.path.join(shared, "corpus.txt"), os.path.join(shared, "secret.txt")
        for path, mode in ((readable, 0o644), (secret, 0)):
            shutil.copy(corpus_file, path)
            os.chmod(path, mode)
        work = os.path.join(shared, "w")
        result = run_cli("train", *tiny_args(work, secret), env=env, prefix=prefix)
        assert_one_line_error(result, "secret.txt", "ermission denied")
        locked = os.path.join(shared, "locked")
        os.mkdir(locked, 0o555)  # root's, read-only to everyone else
        result = run_cli("train", *tiny_args(os.path.join(locked, "w"), readable), env=env,
                         prefix=prefix)  # fmt: skip
        assert_one_line_error(result, "locked", "permission denied")
        private = os.path.join(shared, "private")  # root's folder, closed to everyone else
        os.mkdir(private, 0o700)
        hidden = shutil.copy(corpus_file, os.path.join(private, "corpus.txt"))
        result = run_cli("train", *tiny_args(work, hidden), env=env, prefix=prefix)
        # It exists: 'does not exist' (os.path.exists's answer) sent users looking for a typo.
        assert_one_line_error(result, "corpus.txt cannot be reached: this user may not enter",
                              "private (permission denied)")  # fmt: skip


def test_a_folder_walk_that_cannot_enter_a_folder_says_so(env, corpus_file):
    """A file of a walk this user may not read was an error, a folder silently left out (its
    documents missing from the corpus, nothing said): both are one line naming it now."""
    with faults.as_nobody(env) as (prefix, shared, env):
        corpus = os.path.join(shared, "corpus")
        os.makedirs(os.path.join(corpus, "closed"))
        shutil.copy(corpus_file, os.path.join(corpus, "open.txt"))
        shutil.copy(corpus_file, os.path.join(corpus, "closed", "more.txt"))
        os.chmod(corpus, 0o755)
        os.chmod(os.path.join(corpus, "closed"), 0o700)  # root's, closed to 'nobody'
        for spec in (corpus, os.path.join(corpus, "**", "*.txt")):
            result = run_cli("prepare_data", "--config=llp_jax/configs/tiny.py:llp",
                             f"--config.data.corpus={spec}", env=env, prefix=prefix)  # fmt: skip
            assert_one_line_error(result, f"{os.path.join(corpus, 'closed')} cannot be read "
                                  "(permission denied)", "leave it out")  # fmt: skip


def test_a_closed_pipe_ends_quietly(env):
    proc = subprocess.Popen(
        [PYTHON, "-m", "experiments.sample", "--config=llp_jax/configs/tiny.py",
         "--max_new_tokens=2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # as `| head` does once it has its lines: every write is EPIPE
    err = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141, err


def test_a_read_only_workdir_is_evaluated_and_sampled(env, trained):
    """A workdir this user may only read (a colleague's, a read-only mount): sampling and
    evaluating with --out work; evaluating without --out says so before its minutes of work,
    not after them (it used to score every protocol, then fail on eval_validation.json)."""
    with faults.as_nobody(env) as (prefix, shared, env):
        if not prefix:
            pytest.skip("needs root to make a workdir another user can only read")
        work = shutil.copytree(trained["dir"], os.path.join(shared, "theirs"))
        for root, dirs, files in os.walk(work):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        result = run_cli("evaluate", f"--workdir={work}", "--max_tokens=2000", env=env,
                         prefix=prefix)  # fmt: skip
        line = assert_one_line_error(result, "eval_validation.json by default", "--out=FILE")
        assert "permission denied" in line and "| standard |" not in result.stdout
        out = os.path.join(shared, "mine.json")
        result = run_cli("evaluate", f"--workdir={work}", "--max_tokens=2000", f"--out={out}",
                         env=env, prefix=prefix)  # fmt: skip
        assert result.rc == 0 and json.load(open(out))["split"] == "validation", str(result)
        result = run_cli("sample", f"--workdir={work}", "--max_new_tokens=4", env=env,
                         prefix=prefix)  # fmt: skip
        assert result.rc == 0 and "--- sample 0" in result.stdout, str(result)
        assert sorted(os.listdir(work)) == sorted(os.listdir(trained["dir"]))
