"""A seeded random-fault loop: 20 rounds of kill -9, Ctrl-C or SIGTERM at a random step of a
tiny run, each round resuming the last; the run then finishes with parameters bitwise equal to a
straight run's, and a metrics log of one row per step with the straight run's losses."""

from __future__ import annotations

import json
import os
import random
import signal

import pytest

from llp_jax.storage import committed_steps, inspect_step
from tests.reliability import faults
from tests.reliability.conftest import params_digest, tiny_args

ROUNDS, STEPS, EVERY = 20, 400, 3
EXPECTED_RC = {signal.SIGKILL: {-signal.SIGKILL}, signal.SIGINT: {130}, signal.SIGTERM: {0}}


def losses(workdir) -> dict[int, float]:
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


@pytest.mark.slow
def test_twenty_random_faults_then_bitwise_the_straight_run(server, corpus_file, tmp_path):
    straight, faulted = tmp_path / "straight", tmp_path / "faulted"
    args = lambda w: tiny_args(w, corpus_file, steps=STEPS, every=EVERY)  # noqa: E731
    result = server.run("train", *args(straight))
    assert result.rc == 0, str(result)
    rng = random.Random(15)
    kinds = []
    for _ in range(ROUNDS):
        run = server.spawn("train", *args(faulted))
        reached = max(faults.metrics_steps(faulted), default=0)
        faults.wait_for_step(faulted, min(reached + rng.randint(1, 4), STEPS - 1), run)
        kind = rng.choice(list(EXPECTED_RC))
        kinds.append(kind)
        run.send_signal(kind)
        result = faults.finish(run)
        assert "Traceback" not in result.stdout + result.stderr, str(result)
        assert result.rc in EXPECTED_RC[kind], (kind, str(result))
        for step in committed_steps(faulted / "checkpoints"):
            assert inspect_step(faulted / "checkpoints" / str(step)) is None
    assert {signal.SIGKILL, signal.SIGINT, signal.SIGTERM} <= set(kinds)
    assert max(faults.metrics_steps(faulted)) < STEPS  # every round interrupted the run
    result = server.run("train", *args(faulted))
    assert result.rc == 0, str(result)
    assert params_digest(faulted, STEPS) == params_digest(straight, STEPS)
    assert faults.metrics_steps(faulted) == list(range(1, STEPS + 1))  # one row per step
    assert losses(faulted) == losses(straight)
