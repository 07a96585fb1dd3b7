"""Longest LLP sequence that trains within a per-device memory budget: 1 device vs 8 devices with
the sequence split over a 'sequence' mesh axis (context parallelism).

  python -m experiments.benchmark_sequence_parallel            # writes the table below
  python -m experiments.benchmark_sequence_parallel --budget_mib=512 --num_layers=2

For n = min_len, 2 min_len, 4 min_len, ... the train step (forward + backward of the mean
next-token loss, as `value_and_grad`) is compiled for batch 1, and the memory one device needs is
read from the compiled executable's `memory_analysis()` (arguments + outputs + temporaries -
aliased, per device: the SPMD program is the per-device one). The longest n under the budget is
then run once to warm up and timed once. Runs on 8 fake CPU devices that share this machine's
cores, so the times only show that the step runs; the memory per device is the point: each
device holds n / 8 positions and, per layer, receives just the last k segments of keys/values of
its left neighbour. Writes experiments/results/sequence_parallel.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import platform
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from llp_jax import models, paths
from llp_jax.cli import common
from llp_jax.training import mesh as mesh_lib
from llp_jax.training import sequence_parallel as sp
from llp_jax.training.train_step import next_token_loss

_BUDGET = common.count_flag("budget_mib", 256, "Memory budget per device, MiB.", lower_bound=1)
_SEGMENT = common.count_flag("segment_len", 128, "s, LLP segment length.", lower_bound=1)
_D_MODEL = common.count_flag("d_model", 128, "Width.", lower_bound=1)
_LAYERS = common.count_flag("num_layers", 4, "Layers.", lower_bound=1)
_DEVICES = common.count_flag("devices", 8, "Devices of the sequence axis.", lower_bound=1)
_MAX_LEN = common.count_flag("max_len", 1 << 17, "Stop doubling here.", lower_bound=1)
_OUT = common.output_flag("out", "experiments/results/sequence_parallel.md", "Markdown output.")

MiB = 1 << 20


def model_config(seq_len: int) -> models.ModelConfig:
    return models.ModelConfig(
        name="llp",
        vocab_size=256,
        seq_len=seq_len,
        num_layers=_LAYERS.value,
        d_model=_D_MODEL.value,
        num_heads=4,
        segment_len=_SEGMENT.value,
    ).validate()


def train_step(graphdef, mesh):
    """Jitted (params, batch) -> (loss, grads): the sequence-parallel loss when `mesh` splits."""
    loss = sp.select_loss(mesh, next_token_loss)
    return jax.jit(jax.value_and_grad(lambda p, b: loss(graphdef, p, b, None)[0]))


def per_device_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - (m.alias_size_in_bytes)
    )


def batch_of(n: int):
    tokens = np.random.default_rng(0).integers(0, 256, (1, n + 1)).astype(np.int32)
    return {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}


def abstract_batch(n: int):
    return {k: jax.ShapeDtypeStruct((1, n), jnp.int32) for k in ("inputs", "targets")}


def sweep(devices: int, lengths):
    """[(n, MiB per device)] for each n until the first one over budget (included)."""
    cfg = model_config(lengths[0])
    graphdef, params = nnx.split(models.build(cfg))
    mesh = mesh_lib.make_mesh(
        ml_collections.ConfigDict({"data": 1, "fsdp": 1, "sequence": devices, "tensor": 1}),
        devices=jax.devices()[:devices],
    )
    step = train_step(graphdef, mesh)
    rows = []
    for n in lengths:
        compiled = step.lower(params, abstract_batch(n)).compile()
        rows.append((n, per_device_bytes(compiled) / MiB))
        print(f"  {devices} device(s), n={n:>7}: {rows[-1][1]:8.1f} MiB per device", flush=True)
        if rows[-1][1] > _BUDGET.value:
            break
    fits = [n for n, mib in rows if mib <= _BUDGET.value]
    seconds = None
    if fits:
        batch = batch_of(fits[-1])
        jax.block_until_ready(step(params, batch))  # compile + warm-up
        t = time.perf_counter()
        jax.block_until_ready(step(params, batch))
        seconds = time.perf_counter() - t
    return rows, (fits[-1] if fits else None), seconds


def main(argv):
    common.start(argv)
    p = _DEVICES.value
    start = p * _SEGMENT.value  # every device holds >= 1 segment
    lengths = []
    n = start
    while n <= _MAX_LEN.value:
        lengths.append(n)
        n *= 2
    results = {}
    for devices in (1, p):
        print(f"sweeping {devices} device(s)")
        results[devices] = sweep(devices, lengths)

    cfg = model_config(start)
    header = (
        f"llp, d = {cfg.d_model}, L = {cfg.num_layers}, H = {cfg.num_heads}, s = "
        f"{cfg.segment_len}, k = {cfg.prev_segments}, V = {cfg.vocab_size}; "
        f"{models.count_params(cfg):,} parameters, float32, batch 1, no remat. Train step = "
        f"value_and_grad of the mean next-token loss. Budget {_BUDGET.value} MiB per device "
        f"(arguments + outputs + temporaries from `memory_analysis()`). Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPU cores shared by {p} fake devices, "
        f"jax {jax.__version__} on {jax.default_backend()}."
    )
    lines = [
        "# Sequence (context) parallelism: longest LLP sequence under a memory budget",
        "",
        f"Command: `{common.command_line('benchmark_sequence_parallel')}`",
        "",
        header,
        "",
        "| devices | mesh | longest n (doubling) | memory/device at n | step time at n |",
        "|---|---|---|---|---|",
    ]
    for devices, (rows, best, seconds) in results.items():
        mib = dict(rows).get(best)
        mesh = "single device" if devices == 1 else f"sequence={devices}"
        lines.append(
            f"| {devices} | {mesh} | {best or '-'} | "
            f"{f'{mib:.1f} MiB' if mib else '-'} | {f'{seconds:.2f} s' if seconds else '-'} |"
        )
    lines += ["", "Memory per device (MiB) for each n tried:", ""]
    lines += ["| n | " + " | ".join(f"{d} device(s)" for d in results) + " |"]
    lines += ["|---|" + "---|" * len(results)]
    for n in lengths:
        cells = [dict(results[d][0]).get(n) for d in results]
        if all(c is None for c in cells):
            break
        lines.append(
            f"| {n} | " + " | ".join("-" if c is None else f"{c:.1f}" for c in cells) + " |"
        )
    lines += [
        "",
        (
            "Step times are on fake devices sharing 2 cores: not a speed measurement. '-' = not "
            "compiled (an earlier n was already over budget)."
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    paths.write_text(_OUT.value, text)


def entry():
    """The `llp-benchmark-sequence-parallel` console script."""
    common.run(main)


if __name__ == "__main__":
    entry()
