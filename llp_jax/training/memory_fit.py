"""Refuses, before anything is allocated, a run whose train state or batch cannot fit the
devices' memory at all.

Why: past the memory, XLA fails differently on each backend. An accelerator raises
RESOURCE_EXHAUSTED, and the trainer says what to make smaller; but on a CPU host a buffer larger
than the memory left aborts the process, wakes the kernel's OOM killer, or (under a memory
ulimit) left the first step waiting forever: `model.d_model=100000` (2.4e11 parameters) hung
there. Sizes far past any memory (`model.num_layers=1e20`, `train.batch_size=1e20`) failed inside
jit's lowering or Grain. The state's bytes are known from its abstract shapes and shardings, so
a state that cannot fit is one line.

The bound is strict: it counts only what must be held (each device's shard of the state, and
the batch's tokens), never an estimate of the activations, so a run that could fit is never
refused; what it lets through may still run out of memory in its step (the trainer's message).
"""

from __future__ import annotations

import math
from typing import Any

import jax
from flax import nnx
from jax.sharding import Mesh

from llp_jax import backend
from llp_jax.errors import ConfigError

_FIX = ("train a smaller model (model.d_model, model.num_layers, model.mlp_ratio), a smaller "
        "train.batch_size (train.grad_accum_steps splits it), or on more devices with a mesh "
        "that shards the state (mesh.fsdp)")  # fmt: skip


def state_bytes(abstract: Any, shardings: Any, mesh: Mesh) -> int:
    """The bytes this process's devices hold of a state: each leaf's shard, on each of them."""
    local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)

    def shard(sharding, subtree) -> int:
        return sum(math.prod(sharding.shard_shape(x.shape)) * x.dtype.itemsize
                   for x in jax.tree.leaves(subtree))  # fmt: skip

    per_device = jax.tree.map(shard, shardings, abstract,
                              is_leaf=lambda x: isinstance(x, nnx.Variable))  # fmt: skip
    return local * sum(jax.tree.leaves(per_device))


def check_fits(abstract: Any, shardings: Any, mesh: Mesh, *, batch_tokens: int = 0,
               memory: tuple[int, str] | None = None) -> None:  # fmt: skip
    """One ConfigError line where the state's shards and a batch of `batch_tokens` int32 ids
    need more than `memory` ((bytes, name); None: the devices' own)."""
    memory = memory or backend.device_memory(list(mesh.devices.flat))
    if memory is None:
        return
    state, batch = state_bytes(abstract, shardings, mesh), 4 * batch_tokens
    if state + batch <= memory[0]:
        return
    params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract["params"]))
    size = backend.size_text
    raise ConfigError(
        f"this run needs at least {size(state + batch)} of memory, more than the "
        f"{size(memory[0])} of {memory[1]}: its train state {size(state)} (the weights and "
        f"optimizer moments of {params:,} parameters), the batch's tokens {size(batch)}; {_FIX}"
    )
