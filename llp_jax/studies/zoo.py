"""A table of the zoo: parameters and measured jitted forward time per model (tiny presets)."""

from __future__ import annotations

import time

import jax
import numpy as np
from flax import nnx

from llp_jax.models import MODEL_NAMES, ModelConfig, build, count_params, tiny


def time_forward(cfg: ModelConfig, batch_size: int = 2, repeats: int = 10) -> tuple[float, float]:
    """(compile seconds, median forward milliseconds) of the jitted forward pass."""
    graphdef, state = nnx.split(build(cfg))
    forward = jax.jit(lambda st, t: nnx.merge(graphdef, st)(t))
    tokens = jax.random.randint(jax.random.key(0), (batch_size, cfg.seq_len), 0, cfg.vocab_size)
    start = time.perf_counter()
    forward(state, tokens).block_until_ready()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(state, tokens).block_until_ready()
        times.append(time.perf_counter() - start)
    return compile_s, 1e3 * float(np.median(times))


def zoo_table(batch_size: int = 2, **overrides) -> str:
    """Markdown table: every model, clean and code-faithful, at the tiny preset."""
    lines = [
        f"| model | preset | parameters | compile s | forward ms (batch {batch_size}) |",
        "|---|---|---:|---:|---:|",
    ]
    for name in MODEL_NAMES:
        for faithful in (False, True):
            cfg = tiny(name, faithful=faithful, **overrides)
            compile_s, ms = time_forward(cfg, batch_size)
            lines.append(
                f"| {name} | {'code-faithful' if faithful else 'clean'} | {count_params(cfg):,} "
                f"| {compile_s:.2f} | {ms:.2f} |"
            )
    return "\n".join(lines)
