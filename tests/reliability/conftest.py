"""Fixtures of the fault-injection suite: one warm CLI server, the XLA compilation cache the
launched programs share, the arguments of a tiny fast run, and a trained workdir to damage.

Every test works on its own copy of the trained workdir (`victim`), so no fault leaks into
another test."""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest

from llp_jax.storage import committed_steps, load_params
from tests.helpers.cli import CliServer, cli_env, run_cli

TINY = "--config=llp_jax/configs/tiny.py:llp"


def tiny_args(workdir, corpus, *, steps=4, every=2, **overrides) -> list[str]:
    """A run of the tiny LLP (n = 64, d = 32) that takes well under a second per step."""
    fields = {
        "data.corpus": corpus, "model.seq_len": 64, "model.segment_len": 16,
        "model.d_model": 32, "train.num_steps": steps, "train.log_every": 1,
        "train.checkpoint_every": every, "train.eval_every": 1000, "train.eval_batches": 1,
        "train.batch_size": 4, "train.warmup_steps": 2, "sample.num_tokens": 4,
    }  # fmt: skip
    fields.update({k.replace("__", "."): v for k, v in overrides.items()})
    return [TINY, f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in fields.items())]


def params_digest(workdir, step=None) -> str:
    """A hash of every parameter of a step (default: the newest committed one)."""
    directory = os.path.join(workdir, "checkpoints")
    step = committed_steps(directory)[-1] if step is None else step
    params = load_params(directory, step)
    digest = hashlib.sha256()

    def walk(tree, prefix=""):
        for key in sorted(tree):
            if isinstance(tree[key], dict):
                walk(tree[key], f"{prefix}{key}/")
            else:
                digest.update(f"{prefix}{key}".encode())
                digest.update(np.asarray(tree[key]).tobytes())

    walk(params)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_env")
    return cli_env(str(root / "xla_cache"), XDG_CACHE_HOME=str(root / "cache"))


@pytest.fixture(scope="session")
def server(env):
    s = CliServer(env)
    yield s
    s.close()


@pytest.fixture(scope="session")
def trained(tmp_path_factory, corpus_file, env):
    """A finished tiny run: checkpoints at steps 2 and 4, its summary, and their digests."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    result = run_cli("train", *tiny_args(workdir, corpus_file), env=env)
    assert result.rc == 0, str(result)
    assert committed_steps(workdir / "checkpoints") == [2, 4]
    return {"dir": str(workdir), "digest": {s: params_digest(workdir, s) for s in (2, 4)}}


@pytest.fixture
def victim(trained, tmp_path):
    """A private copy of the trained workdir."""
    path = tmp_path / "victim"
    shutil.copytree(trained["dir"], path)
    return str(path)
