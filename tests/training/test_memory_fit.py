"""A run whose train state (or batch) cannot fit the devices' memory at all is one line, before
anything is allocated.

On this CPU, `train --config.model.d_model=100000` (2.4e11 parameters) under a memory ulimit hung
in its first step (10 minutes, killed); a buffer past the memory aborts a CPU process or wakes
the kernel's OOM killer; `model.num_layers=1e20` was a TypeError from jit's lowering and
`train.batch_size=1e20` a StopIteration from inside Grain. The bound counts only what must be
held (each device's shard of the state and the batch's tokens), so it is checked here against
the bytes of the real initialised state, sharded and not."""

from __future__ import annotations

import jax
import optax
import pytest

from llp_jax import backend, models
from llp_jax.errors import LLPError
from llp_jax.training import memory_fit
from llp_jax.training import mesh as mesh_lib
from llp_jax.training.config import MeshConfig
from llp_jax.training.train_step import init_train_state

CFG = models.tiny("llp", num_layers=2, d_model=64, vocab_size=259)


def _held_bytes(state) -> int:
    """The bytes the initialised state holds on this process's devices, shard by shard."""
    return sum(s.data.nbytes for x in jax.tree.leaves(state) for s in x.addressable_shards)


@pytest.mark.parametrize("mesh_config", [MeshConfig(data=1), MeshConfig(data=2, fsdp=4),
                                         MeshConfig(data=8)])  # fmt: skip
def test_the_bound_is_the_bytes_the_initialised_state_holds(mesh_config):
    devices = jax.devices()[:1] if mesh_config.data == 1 else jax.devices()
    mesh = mesh_lib.make_mesh(mesh_config, devices)
    seen = {}
    real = memory_fit.check_fits

    def spy(abstract, shardings, mesh, **kwargs):
        seen["need"] = memory_fit.state_bytes(abstract, shardings, mesh)
        return real(abstract, shardings, mesh, **kwargs)

    memory_fit.check_fits, saved = spy, memory_fit.check_fits
    try:
        _, state, _ = init_train_state(lambda: models.build(CFG), optax.adamw(1e-3), mesh, 0)
    finally:
        memory_fit.check_fits = saved
    assert seen["need"] == _held_bytes(state)


def test_a_state_past_the_memory_is_one_line_naming_its_size_and_the_fixes():
    mesh = mesh_lib.make_mesh(MeshConfig(data=1), jax.devices()[:1])
    with pytest.raises(LLPError) as err:
        init_train_state(lambda: models.build(CFG), optax.adamw(1e-3), mesh, 0,
                         batch_tokens=10, memory=(100_000, "a small device"))  # fmt: skip
    message = str(err.value)
    assert "\n" not in message
    for part in ("needs at least", "of memory", "100.0 KB of a small device", "parameters",
                 "model.d_model", "train.batch_size", "mesh.fsdp"):  # fmt: skip
        assert part in message, message
    # The batch's tokens count too: a state that fits, with a batch that does not.
    with pytest.raises(LLPError, match="the batch's tokens"):
        init_train_state(lambda: models.build(CFG), optax.adamw(1e-3), mesh, 0,
                         batch_tokens=10**20, memory=(10**9, "a device"))  # fmt: skip


def test_the_host_s_memory_is_found():
    total, name = backend.device_memory(jax.devices()[:1])
    assert 2**28 < total < 2**50 and "memory" in name
