"""An int seed is all 64 bits of it, everywhere one is taken (`train.seed`, `sample.seed`,
`experiments.sample --seed`, `build(seed=)`, a model's or `generate`'s `rng=`).

`jax.random.key(seed)` keeps a seed's low 32 bits unless `jax_enable_x64` is on, so seeds 0 and
2**32 (or -1 and 2**32 - 1) gave one key: two runs meant to differ were the same run. Past int64 it
raised a bare OverflowError from inside JAX (a traceback from `sample --seed=2**64` and from
`train --config.train.seed=1e20`). The keys are checked against JAX's own with x64 on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

import llp_jax
from llp_jax import models
from llp_jax.errors import ConfigError, LLPError
from llp_jax.evaluation import sample_settings
from llp_jax.models.inputs import as_rng, seed_key
from llp_jax.training.config import TrainConfig

SEEDS = [0, 1, 7, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**40 + 5, 2**63 - 1, -1, -2, -(2**63)]


def _x64_keys(seeds) -> list[list[int]]:
    """JAX's own keys with 64-bit seeds (x64 on, in a process of its own)."""
    code = ("import json, sys, jax, numpy as np; print(json.dumps([np.asarray(jax.random.key_data("
            "jax.random.key(np.int64(s)))).tolist() for s in json.loads(sys.argv[1])]))")  # fmt: skip
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(seeds)], env=env, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return json.loads(out)


def _data(key) -> list[int]:
    return np.asarray(jax.random.key_data(key)).tolist()


def test_a_seed_s_key_is_jax_s_own_with_64_bit_seeds():
    assert [_data(seed_key(s)) for s in SEEDS] == _x64_keys(SEEDS)
    # The seeds below 2**32 keep the keys they always had: runs and samples made before are
    # the same.
    for s in (0, 1, 7, 2**31, 2**32 - 1):
        assert _data(seed_key(s)) == _data(jax.random.key(s))
    # Unsigned 64-bit seeds are the negative ones' two's complement, as in numpy.
    assert _data(seed_key(2**64 - 1)) == _data(seed_key(-1))
    assert _data(seed_key(np.uint64(2**64 - 2))) == _data(seed_key(-2))


def test_seeds_a_multiple_of_2_32_apart_differ_where_they_are_used():
    assert _data(as_rng(0)) != _data(as_rng(2**32))
    cfg = models.tiny("llp", num_layers=1, d_model=32)
    a, b = (jax.tree.leaves(llp_jax.build(cfg, seed=s)) for s in (3, 3 + 2**32))
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert np.array_equal(
        np.asarray(jax.tree.leaves(llp_jax.build(cfg, seed=3))[0]), np.asarray(a[0])
    )
    # A traced init (the trainer's, inside jit) takes the same key.
    assert _data(jax.jit(lambda: jax.random.key_data(seed_key(2**40 + 5)))()) == _data(
        seed_key(2**40 + 5)
    )


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 10**20])
def test_a_seed_past_64_bits_is_one_line_wherever_it_is_taken(seed):
    bound = "must be a 64-bit integer (from -2**63 to 2**64 - 1)"
    with pytest.raises(LLPError, match="^" + re.escape(f"seed={seed} {bound}")):
        seed_key(seed)
    with pytest.raises(LLPError, match=r"rng=.* must be a 64-bit integer"):
        as_rng(seed, name="rng")
    with pytest.raises(LLPError, match=r"^seed=.* must be a 64-bit integer"):
        llp_jax.build(models.tiny("llp", num_layers=1, d_model=32), seed=seed)
    with pytest.raises(LLPError, match=r"^--seed=.* must be a 64-bit integer"):
        sample_settings.check_sampling(num_new=1, temperature=1.0, top_k=0, top_p=1.0,
                                       seed=seed, prefix="--")  # fmt: skip
    if seed > 0:
        with pytest.raises(ConfigError, match=r"train.seed=.* must be in \[0, 2\*\*64\)"):
            TrainConfig(seed=seed).validate()
        with pytest.raises(ConfigError, match=r"sample.seed=.* must be in \[0, 2\*\*64\)"):
            sample_settings.SampleConfig(seed=seed).validate()
