"""Multi-host start-up on JAX's own engine (`jax.distributed`): TPU pod slices, multi-node GPU,
and several CPU processes on one machine (gloo collectives) for testing.

Every process runs the same program; each loads only its share of the data (the pipeline shards
by `jax.process_index()`), builds its rows of the global batch with
`jax.make_array_from_process_local_data`, and takes part in Orbax's checkpoint writes. Logging,
metrics and plots come from process 0 only.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Starts `jax.distributed` (explicit address, or cluster auto-detection when None).

    Must run before anything touches a JAX device. On CPU, cross-process collectives need gloo.
    """
    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )


def gather_to_host(tree):
    """A host copy of a pytree of (possibly multi-process) global arrays, on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def any_process(flag: bool) -> bool:
    """True on every process if `flag` is True on any (a collective: call it on all processes
    at the same point). One process: the flag itself, no communication."""
    if jax.process_count() == 1:
        return bool(flag)
    flags = multihost_utils.process_allgather(np.asarray(flag, np.int32))
    return bool(np.max(flags))
