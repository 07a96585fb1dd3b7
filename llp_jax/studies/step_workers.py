"""The step benchmark's worker processes: a step in another process, timed one request at a time
over a line protocol (`ready ...` once warmed up; `step` -> `<seconds> <loss>`), so that the
benchmark can alternate it with its own steps in one run — the authors' PyTorch ECP step
(tools/authors_step.py) and our step under XLA flags of its own (tools/our_step.py: XLA reads
`XLA_FLAGS` once per process).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

from llp_jax.errors import LLPError

if TYPE_CHECKING:
    from llp_jax.studies.step_benchmark import StepSpec


class Worker:
    """A step in a worker process, one step per request: the line protocol of
    tools/authors_step.py (`ready ...` once warmed up; `step` -> `<seconds> <loss>`)."""

    def __init__(self, cmd: list[str], env: dict[str, str], what: str):
        # Its stderr goes to a file: a worker that cannot start (an unknown XLA flag, a broken
        # checkout) is reported in one line, not with the pages it printed.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, env=env)  # fmt: skip
        self.what = what
        self.banner = self.proc.stdout.readline().strip()
        if not self.banner.startswith("ready"):
            self.proc.kill()
            self.proc.wait()
            raise LLPError(f"{what} did not start: {self._why()}")

    def _why(self) -> str:
        """The line of the worker's stderr that says why it failed (or its last line)."""
        self.stderr.flush()
        self.stderr.seek(0)
        lines = [x.strip() for x in self.stderr.read().splitlines() if x.strip()]
        why = next((x for x in lines if "Unknown flag" in x or x.startswith("error")),
                   lines[-1] if lines else "no output")  # fmt: skip
        return why[-300:]

    def timed(self, request: str = "step") -> float:
        """Seconds the worker took for one request ('step', or 'generate P G')."""
        try:
            self.proc.stdin.write(request + "\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline().split()
        except BrokenPipeError:
            reply = []
        if not reply:
            raise LLPError(f"{self.what} stopped (exit status {self.proc.wait()}): {self._why()}")
        return float(reply[0])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.stderr.close()


def _tool(name: str) -> str:
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "tools", name))


def AuthorsWorker(spec: StepSpec, dropout: float) -> Worker:  # noqa: N802 (a constructor)
    """The authors' ECP step in a PyTorch worker (tools/authors_step.py)."""
    cmd = [spec.torch_python, _tool("authors_step.py"), f"--authors={spec.authors}",
           f"--dim={spec.d_model}", f"--layers={spec.num_layers}", f"--heads={spec.num_heads}",
           f"--seq_len={spec.seq_len}", f"--segments={spec.segments}",
           f"--vocab={spec.vocab_size}", f"--batch={spec.batch}", f"--dropout={dropout}"]  # fmt: skip
    # Passive OpenMP threads: PyTorch's pool would otherwise spin on the cores for a while
    # after each of its steps, slowing the step of ours that follows.
    return Worker(cmd, {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, "the authors' step worker")


def FlagsWorker(spec: StepSpec, label: str, xla_flags: str) -> Worker:  # noqa: N802
    """One of our variants under its own `XLA_FLAGS` (tools/our_step.py), added to whatever
    flags this process was started with (the same for every worker, the control included)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {xla_flags}".strip()
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")),
         *filter(None, [env.get("PYTHONPATH")])])  # fmt: skip
    # The whole spec, so that the worker's step is the one timed in this process.
    own = dataclasses.replace(spec, variants=(label,), flag_sets=(), authors="", torch_python="")
    cmd = [sys.executable, _tool("our_step.py"), f"--variant={label}",
           f"--spec={json.dumps(dataclasses.asdict(own))}"]  # fmt: skip
    return Worker(cmd, env, f"the {label} worker under XLA_FLAGS={xla_flags!r}")
