"""A model whose weights cannot fit the memory they are built in is one line before anything is
allocated (`models.check_fits`): built eagerly past the host's memory, the weights woke the
kernel's OOM killer and the process died without a word. Traced builds (the trainer's jitted
init, shapes only) are not refused: the trainer checks its sharded state itself."""

from __future__ import annotations

import dataclasses

import jax
import pytest
from flax import nnx

from llp_jax import backend, models
from tests.helpers.cli import assert_one_line_error, run_cli
from tests.helpers.models import make_config

# 240 billion parameters: ~1 TB of float32 weights, past any host these tests run on.
HUGE = dataclasses.replace(make_config("llp"), d_model=100_000, num_heads=4)


def test_an_eager_build_past_the_memory_is_one_line():
    with pytest.raises(models.ConfigError) as err:
        models.build(HUGE)
    message = str(err.value)
    assert "\n" not in message
    total, where = backend.device_memory(jax.devices()[:1])
    for part in ("model llp's weights need 960.", f"{models.count_params(HUGE):,} float32",
                 f"more than the {backend.size_text(total)} of {where}", "a smaller model"):  # fmt: skip
        assert part in message, message


def test_a_traced_build_is_not_refused():
    """The trainer builds inside jax.eval_shape and jit, under a mesh that may shard the weights
    over many devices: no single device holds them, so only its own check applies."""
    abstract = nnx.eval_shape(lambda: models.build(HUGE))
    assert models.count_params(abstract) == models.count_params(HUGE) > 2 * 10**11


def test_a_model_that_fits_is_built_and_its_count_is_remembered():
    cfg = make_config("transformer")
    assert models.count_params(models.build(cfg)) == models.count_params(cfg)
    models.build(cfg)  # the check's count comes from a cache the second time
    from llp_jax.models import zoo  # noqa: PLC0415

    assert zoo._param_count.cache_info().hits >= 1


def test_a_benchmark_of_a_model_past_the_memory_is_one_line(tmp_path):
    """`benchmark_decode --d_model=12000` (27.6 GB on this 24 GB host) was killed by the kernel
    (rc 137, no message); --d_model=100000 is past any host the suite runs on."""
    result = run_cli(
        "benchmark_decode", "--d_model=100000", f"--out={tmp_path / 'd.md'}", timeout=300
    )
    assert_one_line_error(result, "model llp's weights need", "more than the")
