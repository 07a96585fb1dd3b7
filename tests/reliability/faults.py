"""What the fault tests do to a workdir or a process: damage a checkpoint step the ways disks and
people do, launch a long run and wait for it to reach a step, run a program inside a private
mount namespace (a full disk, a read-only folder) or as an unprivileged user."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time

from tests.helpers import REPO
from tests.helpers.cli import PYTHON, Result


def _files(step_dir):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs)


def garble_metrics(step_dir):
    with open(os.path.join(step_dir, "metrics", "metrics"), "wb") as f:
        f.write(b"\x00garbage{{")


def random_bytes_everywhere(step_dir):
    rng = __import__("random").Random(0)
    for path in _files(step_dir):
        size = max(os.path.getsize(path), 16)
        with open(path, "wb") as f:
            f.write(bytes(rng.randrange(256) for _ in range(size)))


def truncate_arrays(step_dir):
    state = os.path.join(step_dir, "state")
    for path in _files(state):
        if "/d/" in path or "ocdbt.process" in path:
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 3)


def delete_state(step_dir):
    shutil.rmtree(os.path.join(step_dir, "state"))


def garble_meta(step_dir):
    with open(os.path.join(step_dir, "meta", "metadata"), "w") as f:
        f.write('{"model": ')


def empty_data_iterator(step_dir):
    for path in _files(os.path.join(step_dir, "data")):
        if path.endswith(".json"):
            open(path, "w").close()


DAMAGE = {f.__name__: f for f in (garble_metrics, random_bytes_everywhere, truncate_arrays,
                                  delete_state, garble_meta, empty_data_iterator)}  # fmt: skip


def metrics_steps(workdir) -> list[int]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    steps = []
    for line in open(path, encoding="utf-8"):
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return steps


def launch(args: list[str], env: dict) -> subprocess.Popen:
    """`python -m experiments.train args...`, running in the background."""
    return subprocess.Popen([PYTHON, "-m", "experiments.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def wait_for_step(workdir, step: int, proc, timeout: float = 300) -> int:
    """Waits until the run has logged `step` (its metrics row is written once the next step
    starts, or at a checkpoint); returns the newest logged step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        logged = max(metrics_steps(workdir), default=0)
        if logged >= step:
            return logged
        if proc.poll() is not None:
            result = finish(proc)
            raise AssertionError(f"the run ended before step {step}:\n{result}")
        time.sleep(0.02)
    raise TimeoutError(f"the run did not reach step {step}")


def finish(proc, timeout: float = 300) -> Result:
    """The exit code and output of a launched (Popen) or spawned (CliServer) program."""
    if hasattr(proc, "finish"):
        return proc.finish()
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def namespace_prefix() -> list[str] | None:
    """A command prefix giving the program a private mount namespace (root: `unshare -m`;
    otherwise a user namespace), or None where the kernel or the container allows neither."""
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        if shutil.which(prefix[0]) is None:
            return None
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                               capture_output=True)  # fmt: skip
        if probe.returncode == 0:
            return prefix
    return None


def in_namespace(prefix: list[str], setup: str, command: list[str], env: dict,
                 after: str = "") -> Result:  # fmt: skip
    """Runs `command` after the shell lines `setup` (mounts) in a private mount namespace, then
    `after` (e.g. copying the workdir out before the namespace, and its mounts, go away)."""
    quoted = " ".join("'" + c.replace("'", "'\\''") + "'" for c in command)
    script = f"set -e\n{setup}\nset +e\n{quoted}\nrc=$?\n{after}\nexit $rc\n"
    proc = subprocess.run([*prefix, "sh", "-c", script], capture_output=True, env=env, cwd=REPO)
    return Result(proc.returncode, proc.stdout.decode(errors="replace"),
                  proc.stderr.decode(errors="replace"))  # fmt: skip


def unprivileged_prefix() -> list[str] | None:
    """Runs a program as user 'nobody' when we are root (root reads any file whatever its
    mode), nothing when we are not; None if there is no way to drop privileges."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return None


@contextlib.contextmanager
def as_nobody(env: dict):
    """`(prefix, shared, env)` for running programs as user 'nobody': the command prefix, a
    folder 'nobody' may use (removed afterwards), and `env` with HOME and caches there (another
    user's compile cache is left out). Skips the test where privileges cannot be dropped."""
    import pytest  # noqa: PLC0415

    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("running as root without setpriv: every file is readable")
    shared = tempfile.mkdtemp(prefix="llp_unprivileged_")
    try:
        os.chmod(shared, 0o777)
        env = {**env, "HOME": shared, "XDG_CACHE_HOME": os.path.join(shared, "cache")}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        yield prefix, shared, env
    finally:
        shutil.rmtree(shared, ignore_errors=True)
