"""Helpers shared by the tests (fixtures themselves live in the conftest files)."""

import os

from llp_jax.configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The suite's compilation cache (tests/conftest.py puts it in the environment), for programs
# given a --compilation_cache flag.
CACHE = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")


def small_config(corpus_file, model="llp", **train):
    """A tiny trainer config on `corpus_file` (the `corpus_file` fixture): n = 64, d = 32."""
    config = tiny.get_config(model)
    config.model.update(seq_len=64, segment_len=16 if model == "llp" else 0, d_model=32)
    config.data.corpus = corpus_file
    config.train.update(
        batch_size=8, num_steps=4, warmup_steps=2, eval_every=1000, log_every=1,
        checkpoint_every=2, learning_rate=1e-2,
    )  # fmt: skip
    config.train.update(train)
    return config
