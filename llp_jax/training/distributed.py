"""Multi-host start-up on JAX's own engine (`jax.distributed`): TPU pod slices, multi-node GPU,
and several CPU processes on one machine (gloo collectives) for testing.

Every process runs the same program; each loads only its share of the data (the pipeline shards
by `jax.process_index()`), builds its rows of the global batch with
`jax.make_array_from_process_local_data`, and takes part in Orbax's checkpoint writes. Logging,
metrics and plots come from process 0 only.
"""

from __future__ import annotations

import numbers
import socket
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from llp_jax import backend
from llp_jax.errors import LLPError, first_line

_FIX = (
    "give every process --coordinator_address=host:port (process 0's machine), "
    "--num_processes and its own --process_id"
)


class DistributedError(LLPError, RuntimeError):
    """Multi-host start-up cannot go ahead: bad cluster arguments, or no cluster to join."""


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int = 300,
) -> None:
    """Starts `jax.distributed` (explicit address, or cluster auto-detection when None), then
    JAX's backend.

    Must run before anything touches a JAX device. On CPU, cross-process collectives need gloo.

    Raises:
      DistributedError: arguments JAX would refuse with a traceback (a process id outside
        [0, num_processes), an address without a port), no cluster to detect, or no
        coordinator within `timeout_s`; one line naming the argument and the fix.
      BackendError: the backend cannot start (backend.check).
    """
    check_cluster_args(coordinator_address, num_processes, process_id)
    if coordinator_address is not None and process_id:
        wait_for_coordinator(coordinator_address, timeout_s)
    if process_id is not None and num_processes is not None and num_processes > 1:
        # JAX ends every process with a fatal log (no Python exception to catch) when the
        # others have not joined by the timeout; this line says what that wait was.
        print(f"multi-host: process {process_id} of {num_processes} joining at "
              f"{coordinator_address}; every process must join within {timeout_s} s",
              file=sys.stderr, flush=True)  # fmt: skip
    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=timeout_s,
        )
    except Exception as e:  # noqa: BLE001  whatever JAX raises, the cluster did not start
        raise DistributedError(_start_failure(e)) from e
    backend.check()


def check_cluster_args(coordinator_address, num_processes, process_id) -> None:
    """The checks JAX makes with a traceback (or not at all), as one-line DistributedErrors."""
    for name, value, low in (("num_processes", num_processes, 1), ("process_id", process_id, 0)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low
        ):
            raise DistributedError(f"{name}={value!r} must be an int >= {low}")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise DistributedError(
            f"process_id={process_id} must be below num_processes={num_processes}: the "
            f"processes are numbered 0..{num_processes - 1}"
        )
    if coordinator_address is None:
        return
    host, _, port = str(coordinator_address).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(
            f"coordinator_address={coordinator_address!r} must be host:port (e.g. "
            "10.0.0.2:1234): the machine of process 0 and a free port there"
        )


def wait_for_coordinator(coordinator_address: str, timeout_s: float) -> None:
    """Waits until process 0's coordinator accepts connections, for a process other than 0.

    Why: JAX's client aborts the whole process (a fatal C++ log) when it cannot register with
    the coordinator by its timeout; a wrong address, or process 0 not started, deserves one
    line instead. Process 0 hosts the coordinator, so it does not wait here.
    """
    host, _, port = coordinator_address.rpartition(":")
    host = host.strip("[]")  # an IPv6 literal: [::1]:1234
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(5.0, timeout_s)):
                return
        except socket.gaierror as e:
            raise DistributedError(
                f"coordinator_address={coordinator_address!r}: cannot resolve {host!r} ({e}); "
                "give the address of process 0's machine"
            ) from e
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"multi-host start: no coordinator answered at {coordinator_address} within "
                    f"{timeout_s:g} s ({e.strerror or e}); start process 0 (it hosts the "
                    "coordinator) with the same --coordinator_address, or check that address "
                    "and --distributed_timeout"
                ) from e
            time.sleep(0.25)


def _start_failure(error: Exception) -> str:
    """What a failed `jax.distributed.initialize` means, for its one line."""
    text = first_line(error, 300)
    if "coordinator_address should be defined" in text:
        return f"multi-host start: no cluster was detected to supply the coordinator; {_FIX}"
    if "Number of processes must be defined" in text or "process_id" in text:
        return f"multi-host start: no cluster was detected to supply the process ids; {_FIX}"
    if "should only be called once" in text or "before any JAX" in text:
        return f"multi-host start: {text}; start the cluster before anything else uses JAX"
    return (
        f"multi-host start failed ({type(error).__name__}: {text}); {_FIX}, or --distributed "
        "where a cluster (TPU pod, SLURM, Open MPI) supplies them"
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
