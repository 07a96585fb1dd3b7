"""Running the real command-line programs from tests, and what a user must see when they fail.

`run_cli` starts `python -m experiments.<name>` as a user would; `CliServer` runs the same
programs' `entry()` in children forked from one warm process (tests/helpers/cli_server.py), for
the many invocations of the fault and fuzz suites. `assert_one_line_error` is the contract of
every fault: a given exit code, exactly one `error:` line, and no traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

from tests.helpers import REPO

PYTHON = sys.executable


def cli_env(cache_dir: str | None = None, **extra: str) -> dict:
    """The environment of a launched program: the checkout importable, XLA compilations cached
    on disk (a fresh process reuses them: seconds instead of tens per launch), quiet TF."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
               XLA_FLAGS="", PYTHONUNBUFFERED="1")  # fmt: skip
    if cache_dir:
        env.update(
            JAX_COMPILATION_CACHE_DIR=cache_dir,
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
    env.update(extra)
    return env


@dataclasses.dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


def run_cli(name: str, *args: str, env: dict | None = None, timeout: float = 600,
            prefix: tuple[str, ...] = ()) -> Result:  # fmt: skip
    """`python -m experiments.<name> args...` in the checkout (`prefix`: e.g. setpriv ...)."""
    proc = subprocess.run(
        [*prefix, PYTHON, "-m", f"experiments.{name}", *args],
        capture_output=True, env=env or cli_env(), cwd=REPO, timeout=timeout,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout.decode(errors="replace"),
                  proc.stderr.decode(errors="replace"))  # fmt: skip


def assert_one_line_error(result: Result, *fragments: str, rc: int = 1) -> str:
    """The fault contract: exit code `rc`, one `error:` line containing every fragment, and no
    traceback anywhere in the output. Returns the line."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, str(result)
    assert result.rc == rc, str(result)
    assert len(result.errors) == 1, str(result)
    line = result.errors[0]
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


class CliServer:
    """Runs `llp_jax.cli.<module>.entry()` with an argv in a child of one warm process."""

    def __init__(self, env: dict | None = None):
        self._env = env or cli_env()
        self._proc = subprocess.Popen(
            [PYTHON, os.path.join(REPO, "tests", "helpers", "cli_server.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self._env, cwd=REPO, text=True,
        )  # fmt: skip
        self._lock = threading.Lock()
        self._tmp = tempfile.mkdtemp(prefix="llp_cli_")
        self._count = 0

    def _ask(self, request: dict) -> dict:
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline()
        if not reply:
            raise RuntimeError("the CLI server died")
        return json.loads(reply)

    def _request(self, op: str, module: str, argv, env) -> tuple[dict, str, str]:
        self._count += 1
        out = os.path.join(self._tmp, f"{self._count}.out")
        err = os.path.join(self._tmp, f"{self._count}.err")
        request = {"op": op, "module": module, "argv": list(argv), "stdout": out, "stderr": err,
                   "env": env or {}}  # fmt: skip
        return self._ask(request), out, err

    def run(self, module: str, *argv: str, env: dict | None = None) -> Result:
        with self._lock:
            reply, out, err = self._request("run", module, argv, env)
            return _result(reply["rc"], out, err)

    def spawn(self, module: str, *argv: str, env: dict | None = None) -> "Spawned":
        """Starts the program and returns at once (its pid, to signal it; `wait` for it)."""
        with self._lock:
            reply, out, err = self._request("spawn", module, argv, env)
        return Spawned(self, reply["pid"], out, err)

    def wait(self, pid: int) -> int:
        with self._lock:
            return self._ask({"op": "wait", "pid": pid})["rc"]

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(timeout=60)
        shutil.rmtree(self._tmp, ignore_errors=True)


def _result(rc: int, out: str, err: str) -> Result:
    with open(out, encoding="utf-8", errors="replace") as f_out:
        stdout = f_out.read()
    with open(err, encoding="utf-8", errors="replace") as f_err:
        stderr = f_err.read()
    os.remove(out)
    os.remove(err)
    return Result(rc, stdout, stderr)


@dataclasses.dataclass
class Spawned:
    """A program started by `CliServer.spawn`: signal `pid`, then `finish()`."""

    server: CliServer
    pid: int
    out: str
    err: str

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def poll(self) -> int | None:
        """None while it runs (a finished child stays a zombie until `finish`)."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return 0
        return None if state != "Z" else 0

    def finish(self) -> Result:
        return _result(self.server.wait(self.pid), self.out, self.err)
