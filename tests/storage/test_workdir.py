"""The workdir's owner lock (local flock and the object-store heartbeat lock), its path checks,
and setting a previous run aside."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from llp_jax import paths
from llp_jax.storage import workdir as workdir_lib
from tests.helpers import REPO

HOLDER = """
import sys, time
from llp_jax.storage.workdir import WorkdirLock
WorkdirLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(path):
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_and_a_killed_owner_leaves_no_stale_lock(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(workdir_lib.WorkdirBusyError) as busy:
            workdir_lib.WorkdirLock(tmp_path).acquire()
        message = str(busy.value)
        assert f"process {holder.pid} on {socket.gethostname()}" in message
        assert "\n" not in message and ".lock" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with workdir_lib.WorkdirLock(tmp_path):  # the kernel released the dead owner's flock
        owner = json.loads((tmp_path / ".lock").read_text())
        assert owner["pid"] == os.getpid()


def test_the_lock_is_reentrant_within_a_process_and_released_by_the_last_holder(tmp_path):
    outer = workdir_lib.WorkdirLock(tmp_path).acquire()
    inner = workdir_lib.WorkdirLock(os.fspath(tmp_path) + "/").acquire()  # the same folder
    inner.release()
    holder_check = subprocess.run(
        [sys.executable, "-c", HOLDER.replace("time.sleep(600)", ""), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert holder_check.returncode != 0 and "WorkdirBusyError" in holder_check.stderr
    outer.release()
    outer.release()  # a second release is a no-op
    done = subprocess.run(
        [sys.executable, "-c", HOLDER.replace("time.sleep(600)", ""), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _remote_lock_file(tmp_path, **owner):
    path = tmp_path / ".lock"
    record = {"host": "other-host", "pid": 1, "since": 0.0, "heartbeat": time.time()}
    path.write_text(json.dumps({**record, **owner}))
    return os.fspath(path)


def test_a_fresh_remote_lock_of_another_host_is_busy(tmp_path):
    path = _remote_lock_file(tmp_path)
    with pytest.raises(workdir_lib.WorkdirBusyError, match="process 1 on other-host"):
        workdir_lib._RemoteLock(path)


@pytest.mark.parametrize(
    "owner",
    [{"heartbeat": 0.0},  # not refreshed for longer than STALE_S
     {"host": socket.gethostname(), "pid": 2**22 + 12345}],  # a dead process on this host
    ids=["stale-heartbeat", "dead-local-owner"],
)  # fmt: skip
def test_a_stale_remote_lock_is_taken_over(tmp_path, owner, monkeypatch):
    monkeypatch.setattr(workdir_lib, "HEARTBEAT_S", 0.05)
    path = _remote_lock_file(tmp_path, **owner)
    lock = workdir_lib._RemoteLock(path)
    try:
        first = json.loads((tmp_path / ".lock").read_text())
        assert first["pid"] == os.getpid() and first["host"] == socket.gethostname()
        time.sleep(0.3)
        assert json.loads((tmp_path / ".lock").read_text())["heartbeat"] > first["heartbeat"]
    finally:
        lock.close()
    assert not (tmp_path / ".lock").exists()


def test_set_aside_moves_the_previous_run_and_keeps_older_ones(tmp_path):
    assert workdir_lib.set_aside(tmp_path / "absent") is None
    assert workdir_lib.set_aside(tmp_path) is None  # empty: nothing to move
    (tmp_path / "checkpoints" / "8").mkdir(parents=True)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    (tmp_path / ".lock").write_text("{}")
    first = workdir_lib.set_aside(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [".lock", "previous_runs"]
    assert sorted(os.listdir(first)) == ["checkpoints", "metrics.jsonl"]
    (tmp_path / "metrics.jsonl").write_text('{"step": 2}\n')
    second = workdir_lib.set_aside(tmp_path)
    assert second != first and len(os.listdir(tmp_path / "previous_runs")) == 2
    assert open(os.path.join(second, "metrics.jsonl")).read() == '{"step": 2}\n'


@pytest.mark.parametrize(
    "path,needle",
    [("", "is empty"), ("   ", "is empty"), ("run\x00x", "NUL"),
     (os.fsdecode(b"run-\xff"), "not valid UTF-8")],
    ids=["empty", "blank", "nul", "non-utf8"],
)  # fmt: skip
def test_check_path_rejects_paths_no_filesystem_call_should_see(path, needle):
    with pytest.raises(workdir_lib.WorkdirError, match=needle) as err:
        workdir_lib.check_path(path)
    assert "\n" not in str(err.value)


def test_file_in_the_way_names_the_file_a_folder_must_replace(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "to_dir").symlink_to(tmp_path)
    assert paths.file_in_the_way(str(a_file)) == str(a_file)
    assert paths.file_in_the_way(str(a_file / "run" / "checkpoints")) == str(a_file)
    assert paths.file_in_the_way(str(tmp_path / "dangling" / "x")) == str(tmp_path / "dangling")
    for fine in (tmp_path, tmp_path / "new" / "run", tmp_path / "to_dir" / "run", "relative/run"):
        assert paths.file_in_the_way(str(fine)) is None
    assert paths.file_in_the_way("gs://bucket/a_file/run") is None
    with pytest.raises(workdir_lib.WorkdirError, match=f"{a_file} is not a folder") as err:
        workdir_lib.check_path(str(a_file / "run"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("workdir", [None, 5, b"bytes/run"])
def test_check_path_rejects_what_is_not_a_path(workdir):
    with pytest.raises(workdir_lib.WorkdirError, match=f"workdir={workdir!r} must be a folder"):
        workdir_lib.check_path(workdir)
