"""Training-step speed and memory vs sequence length n at a fixed number of tokens per step.

What `experiments/benchmark.py` does, as library functions. Each (model, n) pair gets the real
train step of the trainer (`training.train_step.make_train_step`: AdamW, clipping, the
non-finite guard) on one device with batch = tokens_per_step / n, so every point does the same
token work and only the attention's dependence on n changes the time:
  * step time: median of timed steps after a warm-up step (compilation excluded);
  * forward time: the same for a jitted forward pass (logits of the loss positions);
  * peak memory: the compiled executable's `memory_analysis()`, arguments + outputs - aliased
    (donated) + temporaries: XLA's own buffer plan, robust on a shared machine where the process
    RSS is not. A point whose plan exceeds `max_gib` is compiled (memory reported) but not run.
Models: LLP with a fixed segment length s (its attention per token does not grow with n),
PerceiverAR with a fixed latent length l, S^2-Attn with LongLoRA's G = n / 4 (quadratic, 1/4 of
dense) unless a fixed group is given, and the dense causal transformer.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llp_jax import models
from llp_jax.models import attention
from llp_jax.training import MeshConfig, TrainConfig, make_optimizer, make_schedule
from llp_jax.training import mesh as mesh_lib
from llp_jax.training import train_step as steps

BENCH_MODELS = ("transformer", "perceiver_ar", "s2attn", "llp")
MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    """What to measure. Defaults: the grid of the committed results (experiments/results)."""

    models: tuple[str, ...] = BENCH_MODELS
    seq_lens: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384)
    tokens_per_step: int = 16384
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 2
    vocab_size: int = 259  # the byte tokenizer's
    segment_len: int = 256  # llp s
    latent_len: int = 256  # perceiver_ar l
    group_len: int = 0  # s2attn G; 0 = n / 4 (LongLoRA)
    attention_impl: str = "xla"
    steps: int = 5  # timed steps per point (fewer, at least 2, once `point_budget_s` is spent)
    point_budget_s: float = 30.0
    max_gib: float = 16.0

    def model_config(self, name: str, n: int) -> models.ModelConfig:
        """Model `name` at n: LLP with a fixed s, latent models with a fixed l."""
        sizes = models.StructuralSizes(
            segment_len=self.segment_len, latent_len=self.latent_len, group_len=self.group_len
        )
        return models.sized(
            name, n, sizes, vocab_size=self.vocab_size, num_layers=self.num_layers,
            d_model=self.d_model, num_heads=self.num_heads, attention_impl=self.attention_impl,
        )  # fmt: skip


def peak_bytes(compiled) -> int | None:
    """Arguments + outputs - aliased (donated) + temporaries of a compiled executable."""
    mem = compiled.memory_analysis()
    if mem is None:  # some backends do not report
        return None
    return int(
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        - mem.alias_size_in_bytes
        + mem.temp_size_in_bytes
    )


def _timed(fn: Callable[[], object], steps: int, budget_s: float) -> float:
    """Median seconds of `fn` (synchronised) over up to `steps` calls after a warm-up call,
    stopping early (after 2 samples) when `budget_s` is spent. A point so slow that its
    warm-up alone takes over half the budget keeps the warm-up as a sample: first-run
    overheads are negligible there, and the grid stays within minutes."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    warm = time.perf_counter() - start
    times = [warm] if warm > budget_s / 2 else []
    while len(times) < steps and (len(times) < 2 or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(spec: BenchSpec, name: str, n: int, device=None) -> dict:
    """Compiles and times one (model, n) point; returns a row of `run_benchmark`'s table."""
    cfg = spec.model_config(name, n)
    batch = max(spec.tokens_per_step // n, 1)
    device = device or jax.devices()[0]
    mesh = mesh_lib.make_mesh(MeshConfig(), devices=[device])
    train_cfg = TrainConfig()
    tx = make_optimizer(train_cfg, train_cfg.num_steps)
    factory = lambda: models.build(cfg, seed=0)
    graphdef, state, shardings = steps.init_train_state(factory, tx, mesh, 0)
    step = steps.make_train_step(
        graphdef, tx, make_schedule(train_cfg), mesh, shardings, dropout=False
    )
    tokens = np.random.default_rng(n).integers(0, spec.vocab_size, (batch, n + 1), np.int32)
    sharding = mesh_lib.batch_sharding(mesh)
    data = {k: jax.device_put(v, sharding) for k, v in
            (("inputs", tokens[:, :-1]), ("targets", tokens[:, 1:]))}  # fmt: skip
    row = {"model": name, "n": n, "batch": batch, "params": models.count_params(cfg)}

    t = time.perf_counter()
    train_exe = step.lower(state, data).compile()
    row["compile_s"] = time.perf_counter() - t
    forward = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    fwd_exe = forward.lower(state["params"], data["inputs"]).compile()
    row["train_mib"] = (peak_bytes(train_exe) or 0) / MIB
    row["fwd_mib"] = (peak_bytes(fwd_exe) or 0) / MIB
    row["pairs_per_token"] = attention_pairs(cfg) / n
    if max(row["train_mib"], row["fwd_mib"]) > spec.max_gib * 1024:
        row["skipped"] = f"compiled peak > {spec.max_gib:g} GiB: not run"
        return row

    holder = {"state": state}

    def train_once():
        holder["state"], metrics = train_exe(holder["state"], data)
        return metrics["loss"]

    row["step_s"] = _timed(train_once, spec.steps, spec.point_budget_s)
    params = holder["state"]["params"]
    row["fwd_s"] = _timed(lambda: fwd_exe(params, data["inputs"]), spec.steps, spec.point_budget_s)
    row["tokens_per_s"] = batch * n / row["step_s"]
    return row


def attention_pairs(cfg: models.ModelConfig) -> int:
    """Attended (query, key) pairs of one window, all layers, per head, counted from the masks
    the model really uses: its forward pass is traced abstractly (`jax.eval_shape`, nothing
    computed) while `attention.recording` collects every (mask, query, key positions). Layers
    2..L run in one scanned body, traced once, so the second record counts L - 1 times; a
    head-group mask list (S^2-Attn) counts the mean over its groups."""
    graphdef, state = nnx.split(models.abstract_model(cfg))
    tokens = jax.ShapeDtypeStruct((1, cfg.seq_len), jnp.int32)
    with attention.recording() as calls:
        jax.eval_shape(lambda st, t: nnx.merge(graphdef, st)(t), state, tokens)
    expected = 1 if cfg.num_layers == 1 else 2
    if len(calls) != expected:
        raise RuntimeError(
            f"{cfg.name}: expected {expected} traced attention calls, got {len(calls)}"
        )

    def per_head(mask, q_pos, k_pos) -> float:
        masks = [mask] if isinstance(mask, models.MaskSpec) else list(mask)
        return sum(m.pairs(q_pos, k_pos) for m in masks) / len(masks)

    layer_counts = [1, cfg.num_layers - 1][:expected]
    return round(sum(c * per_head(*call) for c, call in zip(layer_counts, calls)))


def _measure_with_rss(spec: BenchSpec, name: str, n: int) -> dict:
    row = measure(spec, name, n)
    row["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def measure_isolated(spec: BenchSpec, name: str, n: int) -> dict:
    """`measure` in a fresh process: its peak RSS is this point's alone, the memory the point's
    executables held goes back to the OS before the next point, and a point killed for memory
    is reported instead of ending the run."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        try:
            return pool.submit(_measure_with_rss, spec, name, n).result()
        except concurrent.futures.process.BrokenProcessPool:
            cfg = spec.model_config(name, n)
            return {
                "model": name, "n": n, "batch": max(spec.tokens_per_step // n, 1),
                "params": models.count_params(cfg), "pairs_per_token": float("nan"),
                "compile_s": float("nan"), "train_mib": float("nan"), "fwd_mib": float("nan"),
                "skipped": "the measuring process died (out of memory?)",
            }  # fmt: skip


def run_benchmark(
    spec: BenchSpec, *, isolate: bool = True, log: Callable[[str], None] = print
) -> list[dict]:
    """Measures every (model, n) of `spec`, in order, logging one line per point; `isolate`
    runs each point in its own process (see `measure_isolated`)."""
    rows = []
    for name in spec.models:
        for n in spec.seq_lens:
            row = measure_isolated(spec, name, n) if isolate else measure(spec, name, n)
            rows.append(row)
            log(format_row(row))
    return rows


def format_row(r: dict) -> str:
    if "skipped" in r:
        planned = num_or_dash(r["train_mib"], ",.0f")
        return f"{r['model']:>12} n={r['n']:>6}: {r['skipped']} (train plan {planned} MiB)"
    return (
        f"{r['model']:>12} n={r['n']:>6} batch={r['batch']:>3}: step {r['step_s'] * 1e3:9.1f} ms, "
        f"fwd {r['fwd_s'] * 1e3:8.1f} ms, train {r['train_mib']:8.1f} MiB, "
        f"fwd {r['fwd_mib']:7.1f} MiB, compile {r['compile_s']:.1f} s"
    )


def num_or_dash(value, fmt: str) -> str:
    """`value` formatted, or '-' for a missing (None) or NaN figure."""
    return "-" if value is None or math.isnan(value) else format(value, fmt)
