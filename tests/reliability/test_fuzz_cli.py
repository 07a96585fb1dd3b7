"""Property-based fuzzing of the real programs: any config value or sampler / evaluation argument
a user can type either works or is one `error:` line (exit 1), never a traceback, and never
touches the trained workdir it reads. Values are drawn around every boundary (zero, negative,
huge, NaN, infinities, strings where numbers belong); fields that set the cost of a run draw
only small sizes, so a valid draw trains a few steps of a tiny model."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.cli import assert_one_line_error
from tests.reliability.conftest import params_digest, tiny_args

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))  # fmt: skip

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=12)  # fmt: skip
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
    [0.0, -0.0, 1e-30, 1.0, -1.0, 0.5, 1e30]))  # fmt: skip
ANY_INT = st.one_of(st.integers(-3, 5), st.sampled_from([-(2**63), 2**31, 10**18, 2**64]))
SMALL = st.integers(-2, 4)


def any_of(*choices):
    return st.one_of(st.sampled_from(choices), TEXT)


# field -> values; cost-setting fields (steps, sizes, batches) stay small.
FIELDS = {
    "train.num_steps": SMALL, "train.batch_size": st.sampled_from([-1, 0, 1, 2, 3, 4]),
    "train.learning_rate": FLOATS, "train.schedule": any_of("cosine", "step_halving", "constant"),
    "train.warmup_steps": ANY_INT, "train.halve_every": ANY_INT, "train.min_lr_ratio": FLOATS,
    "train.b1": FLOATS, "train.b2": FLOATS, "train.eps": FLOATS, "train.weight_decay": FLOATS,
    "train.clip_norm": FLOATS, "train.grad_accum_steps": SMALL, "train.eval_every": ANY_INT,
    "train.eval_batches": SMALL, "train.checkpoint_every": ANY_INT,
    "train.keep_checkpoints": SMALL, "train.log_every": ANY_INT, "train.max_bad_steps": ANY_INT,
    "train.seed": ANY_INT, "train.trainable": any_of("all", "longlora", "attn", "(", ".*"),
    "data.tokenizer": any_of("byte", "sentencepiece", "x.model"),
    "data.vocab_size": st.sampled_from([-1, 0, 1, 299, 300, 400]),
    "data.sp_model_type": any_of("unigram", "bpe", "word"),
    "data.document_boundaries": any_of("eod", "none"), "data.train_stride": ANY_INT,
    "data.seed": ANY_INT, "data.shuffle": any_of("true", "false", "1"),
    "model.seq_len": st.sampled_from([-1, 0, 1, 16, 33, 64]),
    "model.d_model": st.sampled_from([-1, 0, 8, 12, 32]),
    "model.num_heads": st.sampled_from([-1, 0, 1, 3, 4]),
    "model.num_layers": st.sampled_from([-1, 0, 1, 2]),
    "model.segment_len": st.sampled_from([-1, 0, 1, 7, 16, 64]),
    "model.dropout": FLOATS, "model.rope_theta": FLOATS, "model.mlp_ratio": SMALL,
    "model.name": any_of("llp", "transformer", "perceiver_ar", "s2attn"),
    "model.compute_dtype": any_of("float32", "bfloat16", "int8"),
    "mesh.data": SMALL, "mesh.fsdp": SMALL, "mesh.sequence": SMALL, "mesh.tensor": SMALL,
    "sample.temperature": FLOATS, "sample.top_k": ANY_INT, "sample.top_p": FLOATS,
    "sample.num_tokens": SMALL, "sample.seed": ANY_INT,
}  # fmt: skip


def render(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return str(value)


def check(result) -> None:
    """Works (exit 0, no traceback) or is the one-line-error contract."""
    if result.rc == 0:
        assert "Traceback" not in result.stdout + result.stderr, str(result)
    else:
        assert_one_line_error(result)


@pytest.mark.slow
@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), st.none(), min_size=1, max_size=3)
       .flatmap(lambda keys: st.fixed_dictionaries({k: FIELDS[k] for k in keys})))  # fmt: skip
def test_train_config_values(server, corpus_file, tmp_path_factory, overrides):
    workdir = tmp_path_factory.mktemp("fuzz_train")
    argv = tiny_args(workdir, corpus_file, steps=1, every=1)
    argv += [f"--config.{k}={render(v)}" for k, v in overrides.items()]
    check(server.run("train", *argv))


SAMPLE = st.fixed_dictionaries({}, optional={
    "temperature": FLOATS, "top_k": st.integers(-5, 400), "top_p": FLOATS,
    "max_new_tokens": st.integers(-3, 12), "num_samples": st.integers(-1, 3),
    "stop_id": st.integers(-3, 300), "seed": ANY_INT, "prompt": TEXT,
    "method": any_of("auto", "cached", "recompute"), "slide": st.integers(-1, 70),
})  # fmt: skip


@pytest.fixture(scope="module")
def reader(trained):
    yield trained["dir"]
    assert params_digest(trained["dir"], 4) == trained["digest"][4]  # read, never written


@FUZZ
@given(SAMPLE)
def test_sampler_arguments(server, reader, flags):
    argv = [f"--workdir={reader}"] + [f"--{k}={render(v)}" for k, v in flags.items()]
    check(server.run("sample", *argv))


EVALUATE = st.fixed_dictionaries({"max_tokens": st.sampled_from([-5, -1, 1, 2, 50, 300])},
                                 optional={
    "batch_size": st.integers(-2, 16), "window": st.sampled_from([-1, 0, 1, 2, 17, 64, 65, 999]),
    "stride": st.integers(-1, 70), "paper_stride": st.integers(-1, 70),
    "protocols": st.lists(st.sampled_from(["standard", "paper", "stream", "bogus"]),
                          min_size=1, max_size=3).map(",".join),
    "step": st.sampled_from([-1, 0, 2, 3, 4]), "split": any_of("validation", "test", "train"),
})  # fmt: skip


@FUZZ
@given(EVALUATE)
def test_evaluate_arguments(server, reader, tmp_path_factory, flags):
    out = tmp_path_factory.mktemp("fuzz_eval") / "out.json"
    argv = [f"--workdir={reader}", f"--out={out}"]
    argv += [f"--{k}={render(v)}" for k, v in flags.items()]
    check(server.run("evaluate", *argv))
