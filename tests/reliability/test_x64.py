"""A user environment with JAX_ENABLE_X64=1 (scientific JAX setups turn it on for everything):
llp_jax states its own dtypes, so the programs train, evaluate and sample as they do without it,
to the same figures, and each environment reads the other's checkpoints. The end-of-run sample
of a training run was a TypeError traceback from the decoder's loop (an int64 index beside an
int32 one), after the run's steps were done."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO
from tests.helpers.cli import cli_env, run_cli
from tests.reliability.conftest import tiny_args


def _train(workdir, corpus_file, env):
    result = run_cli("train", *tiny_args(workdir, corpus_file), env=env)
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
    return json.loads((workdir / "summary.json").read_text())


def test_the_programs_run_with_x64_on_to_the_same_figures(tmp_path, corpus_file, env):
    x64 = dict(env, JAX_ENABLE_X64="1")
    wide = _train(tmp_path / "x64", corpus_file, x64)
    plain = _train(tmp_path / "plain", corpus_file, env)
    assert abs(wide["val_loss"] - plain["val_loss"]) < 1e-4 * plain["val_loss"], (wide, plain)
    assert wide["sample"] == plain["sample"]
    for workdir, run_env in [(tmp_path / "x64", env), (tmp_path / "plain", x64)]:  # swapped
        for program, *args in [("sample", "--max_new_tokens=8", "--seed=3"),
                               ("evaluate", "--protocols=standard,paper,stream")]:  # fmt: skip
            result = run_cli(program, f"--workdir={workdir}", *args, env=run_env)
            assert result.rc == 0 and "Traceback" not in result.stderr, str(result)


_ACCUMULATE = """
import jax, jax.numpy as jnp, numpy as np
from llp_jax.training.train_step import accumulate_gradients
w = jnp.asarray(np.linspace(-1, 1, 6))                      # float64 under x64
batch = {"x": jnp.asarray(np.arange(24.0).reshape(8, 3))}
loss_fn = lambda p, b, rng: (jnp.mean((b["x"].sum(-1) * p[:1]) ** 2), {"n": jnp.sum(b["x"])})
(loss, aux), grads = accumulate_gradients(loss_fn, w, batch, None, 4)
(loss1, aux1), grads1 = jax.value_and_grad(loss_fn, has_aux=True)(w, batch, None)
assert loss.dtype == jnp.float64 and np.allclose(loss, loss1) and np.allclose(grads, grads1)
print("ok")
"""


def test_gradient_accumulation_of_a_float64_loss():
    """A caller's float64 loss (x64 on) broke the accumulation's scan: its carry was float32."""
    result = subprocess.run([sys.executable, "-c", _ACCUMULATE], capture_output=True, text=True,
                            env=cli_env(JAX_ENABLE_X64="1"), cwd=REPO, timeout=300)  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
