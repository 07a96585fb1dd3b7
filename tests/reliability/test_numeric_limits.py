"""Values valid as numbers but not as the machine's numbers: seeds past 64 bits, step and
token counts past the int32 counters, optimizer and model settings that round to a NaN step in
float32, and sizes past any memory. Each was a traceback from inside JAX or Grain, a NaN step
blamed on the learning rate, or a hang; each is one `error:` line before any work, through the
real programs, and the run read is untouched: test_bad_input.py runs TRAIN_VALUES and
SAMPLE_FLAGS through its own checks (split from it to keep each file small)."""

from __future__ import annotations

import pytest

from tests.helpers.cli import assert_one_line_error
from tests.reliability.conftest import tiny_args

TRAIN_VALUES = [
    ("train.seed=99999999999999999999", "train.seed=99999999999999999999 must be in [0, 2**64)"),
    ("train.seed=-1", "train.seed=-1 must be in [0, 2**64)"),
    ("train.num_steps=3000000000", "train.num_steps=3000000000 must be below 2**31"),
    ("train.warmup_steps=2147483648", "train.warmup_steps=2147483648 must be below 2**31"),
    ("train.halve_every=100000000000000000000", "train.halve_every=100000000000000000000 must"),
    # Valid as float64, not as the optimizer's float32 (each went non-finite, blamed on the lr).
    ("train.b2=0.9999999999", "train.b2=0.9999999999 is 1.0 in float32", "at most 0.99999994"),
    ("train.eps=1e-50", "train.eps=1e-50 must be >= 1.175e-38, a normal float32"),
    ("train.learning_rate=1e-45", "train.learning_rate=1e-45 must be >= 1.175e-38"),
    # SentencePiece's trainer could not parse it: a ValueError traceback.
    ("data.vocab_size=3000000000", "data.vocab_size=3000000000 must be below 2**31"),
    ("model.dropout=0.9999999999", "dropout=0.9999999999 is 1 at the masks' resolution"),
    ("model.rope_theta=1e-50", "rope_theta=1e-50 gives RoPE frequencies past float32"),
    ("model.d_model=100000000000000000000", "model.d_model=100000000000000000000 must be below"),
    ("model.seq_len=2147483648", "model.seq_len=2147483648 must be below 2**31"),
    # The end-of-run sample's settings, checked before the training (they failed after it).
    ("sample.top_p=2", "sample.top_p=2.0 must be in (0, 1]"),
    ("sample.temperature=-1", "sample.temperature=-1.0 must be >= 0"),
    ("sample.top_k=1000", "sample.top_k=1000 must be <= the vocabulary size 259"),
    ("sample.seed=18446744073709551616", "sample.seed=18446744073709551616 must be in [0, 2**64)"),
]


SAMPLE_FLAGS = [
    ("--max_new_tokens=3000000000", "--max_new_tokens must be below 2**31"),
    ("--num_samples=100000000000000000000", "--num_samples must be below 2**31"),
    ("--seed=18446744073709551616", "--seed=18446744073709551616 must be a 64-bit integer"),
    ("--seed=-9223372036854775809", "--seed=-9223372036854775809 must be a 64-bit integer"),
]


@pytest.mark.parametrize(
    "override",
    ["model.d_model=100000", "model.num_layers=2147483647", "model.mlp_ratio=2147483647",
     "train.batch_size=100000000000000000000"],
)  # fmt: skip
def test_a_run_that_cannot_fit_the_memory_is_one_line_before_it_allocates(override, server,
                                                                          corpus_file, tmp_path):  # fmt: skip
    """tests/training/test_memory_fit.py: d_model=100000 hung in its first step under a
    ulimit; the others were tracebacks from jit's lowering and from inside Grain."""
    args = tiny_args(tmp_path / "w", corpus_file)
    heads = ["--config.model.num_heads=4"] if "d_model" in override else []
    result = server.run("train", *args, f"--config.{override}", *heads)
    assert_one_line_error(result, "needs at least", "of memory")
    assert not list((tmp_path / "w" / "checkpoints").glob("*"))


def test_a_weight_decay_that_grows_the_weights_is_named(server, corpus_file, tmp_path):
    """AdamW scales every weight by 1 - lr * weight_decay each step: weight_decay=1e30 ran to a
    non-finite step blamed on the learning rate alone."""
    args = tiny_args(tmp_path / "w", corpus_file)
    result = server.run("train", *args, "--config.train.weight_decay=1e30")
    assert_one_line_error(result, "non-finite loss", "lower train.weight_decay=1e+30 (x the "
                          "learning rate = 2e+27: above 2, every step grows every weight)")  # fmt: skip


def test_a_run_with_an_infinite_float_setting_resumes_and_samples(server, corpus_file, tmp_path):
    """rope_theta=inf (every slow frequency 0) trains; its checkpoints kept the base as the
    string "inf", so the run could be neither sampled ("skipping damaged checkpoint step ...:
    model.rope_theta='inf' must be a float") nor resumed ("written by another model config").
    Steps written that way still read."""
    workdir = tmp_path / "w"
    args = [*tiny_args(workdir, corpus_file), "--config.model.rope_theta=inf"]
    assert server.run("train", *args).rc == 0
    meta = workdir / "checkpoints" / "4" / "meta" / "metadata"
    assert '"rope_theta": Infinity' in meta.read_text()
    for written_before in (False, True):
        if written_before:
            meta.write_text(meta.read_text().replace("Infinity", '"inf"'))
        result = server.run("sample", f"--workdir={workdir}", "--max_new_tokens=4")
        assert result.rc == 0 and "warning" not in result.stderr, str(result)
    result = server.run("train", *args, "--config.train.num_steps=6")
    assert result.rc == 0 and "resumed from step 4" in result.stdout, str(result)
