"""The train step against the limit: time, model FLOPs, utilisation of the measured matmul peak,
a per-op breakdown, and the authors' PyTorch ECP step timed alternately with ours.

What `experiments/benchmark_step.py` does, as library functions. Every variant is the real train
step of the trainer (AdamW, clipping, the non-finite guard) at one config (default: the authors'
small config, d=256, L=4, H=4, n=1024, S=4 -> s=256, V=8192, batch 8). All variants are
compiled first; then each round runs one step of every variant in turn (ours and, with a
checkout of the authors' code and a PyTorch, theirs in a worker process: tools/authors_step.py),
so that machine load falls on all of them alike (the order rotates each round); the figure is
the median over rounds.
FLOPs, peak and breakdown: see step_profile.py.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llp_jax import models
from llp_jax.kernels import blas
from llp_jax.models.matmul import cpu_bf16_matmuls
from llp_jax.studies import step_profile
from llp_jax.studies.benchmark import attention_pairs
from llp_jax.studies.machine import cpu_name, host_allocator
from llp_jax.studies.step_workers import AuthorsWorker, FlagsWorker
from llp_jax.training import MeshConfig, TrainConfig, make_optimizer, make_schedule
from llp_jax.training import mesh as mesh_lib
from llp_jax.training import train_step as steps

# label -> (model, code-faithful, ModelConfig changes)
VARIANTS = {
    "llp": ("llp", False, {}),
    "llp_faithful": ("llp", True, {}),
    "llp_faithful_dropout": ("llp", True, {"dropout": 0.05}),
    "llp_faithful_saveall": ("llp", True, {"remat": "none"}),  # remat off: before 'auto'
    "llp_bf16": ("llp", False, {"compute_dtype": "bfloat16"}),
    "transformer": ("transformer", False, {}),
    "perceiver_ar": ("perceiver_ar", False, {}),
}
AUTHORS = {"authors_ecp": 0.0, "authors_ecp_dropout": 0.05}


@dataclasses.dataclass(frozen=True)
class StepSpec:
    variants: tuple[str, ...] = tuple(VARIANTS)
    seq_len: int = 1024
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 4
    segments: int = 4  # LLP s = n / segments; PerceiverAR l = n / latent_div
    latent_div: int = 4
    vocab_size: int = 8192
    batch: int = 8
    rounds: int = 5
    authors: str = ""  # a checkout of MetaMain/ECPTransformer ("" = not measured)
    torch_python: str = ""  # a Python with torch and einops
    # XLA flag sets to try: each variant of `flag_variants` (a subset of `variants`) then also
    # runs in worker processes, once under the default flags (the control) and once per set.
    flag_sets: tuple[str, ...] = ()
    flag_variants: tuple[str, ...] = ("llp_faithful",)

    def model_config(self, label: str) -> models.ModelConfig:
        name, faithful, changes = VARIANTS[label]
        sizes = models.StructuralSizes(segments=self.segments, latent_div=self.latent_div)
        return models.sized(
            name, self.seq_len, sizes, faithful=faithful, vocab_size=self.vocab_size,
            d_model=self.d_model, num_layers=self.num_layers, num_heads=self.num_heads,
            **{"dropout": 0.0, **changes},
        )  # fmt: skip


class Ours:
    """One compiled train step of one variant, ready to time and to profile."""

    def __init__(self, spec: StepSpec, label: str):
        self.cfg = cfg = spec.model_config(label)
        mesh = mesh_lib.make_mesh(MeshConfig(), devices=jax.devices()[:1])
        train = TrainConfig()
        tx = make_optimizer(train, train.num_steps)
        factory = lambda: models.build(cfg, seed=0)  # noqa: E731
        graphdef, state, shardings = steps.init_train_state(factory, tx, mesh, 0)
        step = steps.make_train_step(graphdef, tx, make_schedule(train), mesh, shardings,
                                     dropout=cfg.dropout > 0)  # fmt: skip
        tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (spec.batch, cfg.seq_len + 1))
        self.data = {"inputs": jnp.asarray(tokens[:, :-1], jnp.int32),
                     "targets": jnp.asarray(tokens[:, 1:], jnp.int32)}  # fmt: skip
        t = time.perf_counter()
        self.exe = step.lower(state, self.data).compile()
        self.compile_s = time.perf_counter() - t
        self.state = state
        # Model FLOPs are the model's, not its form's: counted on the float32 twin (the
        # bfloat16 CPU forms add an implementation matmul, RoPE's pair rotation).
        twin_graphdef, twin_params = nnx.split(
            models.build(dataclasses.replace(cfg, compute_dtype="float32"), seed=0)
        )
        self.shapes, self.batched = step_profile.forward_matmuls(
            lambda p, b: steps.next_token_loss(twin_graphdef, p, b, None, fused=False)[0],
            twin_params,
            self.data,
        )
        self.flops = 3 * step_profile.matmul_flops(self.shapes) + (
            12 * cfg.d_model * attention_pairs(cfg) * spec.batch
        )
        self.executed_attention = step_profile.matmul_flops(self.batched)
        # Warm-up: the first two calls allocate (the donated state). Waited for: dispatch is
        # asynchronous, and steps still running would slow whatever is measured next (the
        # matmul peak, the next variant's first step).
        self.step()
        jax.block_until_ready(self.step())

    def step(self):
        self.state, metrics = self.exe(self.state, self.data)
        return metrics["loss"]

    def timed(self) -> float:
        t = time.perf_counter()
        jax.block_until_ready(self.step())
        return time.perf_counter() - t


def flag_label(label: str, xla_flags: str) -> str:
    return f"{label} [{xla_flags or 'default flags'}]"


def run(spec: StepSpec, log: Callable[[str], None] = print) -> dict:
    """Compiles every variant, measures the peak on their matmul shapes, times them alternately
    for `spec.rounds` rounds, then profiles one step of each of ours."""
    # The flag sets' workers first: one whose flags XLA rejects fails before anything compiles.
    flag_workers, flagged = {}, {}  # worker label -> worker, -> our variant
    for label in spec.flag_variants if spec.flag_sets else ():
        for xla_flags in (*spec.flag_sets, ""):
            flag_workers[flag_label(label, xla_flags)] = FlagsWorker(spec, label, xla_flags)
            flagged[flag_label(label, xla_flags)] = label
            log(f"started {flag_label(label, xla_flags)}")
    ours = {}
    for label in spec.variants:
        ours[label] = Ours(spec, label)
        log(f"compiled {label} in {ours[label].compile_s:.1f}s")
    theirs = {}
    if spec.authors and spec.torch_python:
        theirs = {label: AuthorsWorker(spec, p) for label, p in AUTHORS.items()}
    theirs.update(flag_workers)
    shapes, batched = collections.Counter(), collections.Counter()
    for o in ours.values():
        shapes.update(o.shapes)
        batched.update(o.batched)
    # bfloat16 variants on a CPU with bfloat16 units are measured against bfloat16 dots too.
    bf16 = cpu_bf16_matmuls() == "native" and any(
        o.cfg.compute_dtype == "bfloat16" for o in ours.values()
    )
    peak = step_profile.matmul_peak(shapes, batched, bf16=bf16)
    log(f"matmul peak on the step's shapes: numpy {peak['numpy_gflops']:.0f}, "
        f"XLA {peak['xla_gflops']:.0f} GFLOP/s; attention's batched blocks in: numpy "
        f"{peak['numpy_all_gflops']:.0f}, XLA {peak['xla_all_gflops']:.0f}")  # fmt: skip
    times: dict[str, list[float]] = {label: [] for label in (*ours, *theirs)}
    load = [os.getloadavg()[0]]
    try:
        runners = [*ours.items(), *theirs.items()]
        for r in range(spec.rounds):
            # The order rotates each round, so that no variant always follows the same one (a
            # PyTorch step leaves its thread pool spinning for a moment); a short pause lets
            # the previous runner's threads go idle.
            for label, runner in runners[r % len(runners) :] + runners[: r % len(runners)]:
                time.sleep(0.3)
                times[label].append(runner.timed())
            load.append(os.getloadavg()[0])
            log(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    finally:
        for worker in theirs.values():
            worker.close()
    rows = []
    faithful_flops = next((o.flops for k, o in ours.items() if k.startswith("llp_faithful")), None)
    for label, ts in times.items():
        runner = ours.get(label)
        flops = ours[flagged[label]].flops if label in flagged else (
            runner.flops if runner else faithful_flops)  # fmt: skip
        median = statistics.median(ts)
        row = {"variant": label, "step_s": median, "min_s": min(ts), "max_s": max(ts),
               "tokens_per_s": spec.batch * spec.seq_len / median}  # fmt: skip
        if flops:
            rate = flops / median
            row.update(gflop=flops / 1e9, gflops=rate / 1e9,
                       util_numpy=rate / (peak["numpy_gflops"] * 1e9),
                       util_xla=rate / (peak["xla_gflops"] * 1e9))  # fmt: skip
        own = ours.get(flagged.get(label, label)) or next(
            (o for k, o in ours.items() if k.startswith("llp_faithful")), None)  # fmt: skip
        if flops and own:
            # Against the peak on this step's own mix with attention's batched blocks in.
            mix = step_profile.mix_peak(peak, own.shapes, own.batched)
            row.update(util_numpy_all=rate / (mix["numpy_all_gflops"] * 1e9),
                       util_xla_all=rate / (mix["xla_all_gflops"] * 1e9),
                       peak_all={k: v for k, v in mix.items() if "_all" in k})  # fmt: skip
            if "xla_bf16_gflops" in mix and own.cfg.compute_dtype == "bfloat16":
                row.update(util_bf16=rate / (mix["xla_bf16_gflops"] * 1e9),
                           util_bf16_all=rate / (mix["xla_bf16_all_gflops"] * 1e9))  # fmt: skip
        if runner:
            row["executed_attention_gflop"] = 3 * runner.executed_attention / 1e9
            row["breakdown"] = step_profile.profile_breakdown(runner.step, runner.exe.as_text())
        rows.append(row)
    return {"rows": rows, "times": times, "peak": peak, "load": load, "spec": dataclasses.asdict(spec),
            "authors": {k: w.banner for k, w in theirs.items() if k in AUTHORS},
            "flagged": flagged,
            "machine": f"{cpu_name()}, {os.cpu_count()} CPUs, jax {jax.__version__}, host "
                       f"allocator: {host_allocator()} (the workers' too); attention's float32 "
                       f"block matmuls: CPU BLAS kernel {blas.status()}; bfloat16 matmuls: "
                       f"{cpu_bf16_matmuls()}"}  # fmt: skip
