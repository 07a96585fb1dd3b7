"""Shared fixtures of the training tests: a small corpus file and small trainer configs."""

import os

import pytest

from llp_jax.configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    """A small corpus (~60 kB) so data loading is instant."""
    from llp_jax.data import load_austen

    text = load_austen().splits["validation"][:60_000]
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(text)
    return str(path)


def small_config(corpus_file, model="llp", **train):
    config = tiny.get_config(model)
    config.model.update(seq_len=64, segment_len=16 if model == "llp" else 0, d_model=32)
    config.data.corpus = corpus_file
    config.train.update(
        batch_size=8, num_steps=4, warmup_steps=2, eval_every=1000, log_every=1,
        checkpoint_every=2, learning_rate=1e-2,
    )  # fmt: skip
    config.train.update(train)
    return config
