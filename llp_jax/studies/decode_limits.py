"""What bounds a batch-1 decode step, and how close the cached decoders come to it.

A batch-1 decode step does a few hundred thousand multiply-adds per layer, far too few to keep the
matmul units busy: it is bound by memory traffic. Each step must read every parameter once (the
embedding row aside) and, per layer, the cached keys and values it attends to; so

    bytes/token = 4 * (non-embedding params + d_model * vocab + 2 * L * W * d_model)   (float32)

with W the cached positions a token attends to (LLP (k + 1) * s; the transformer every position
so far), and tokens/s <= measured bandwidth / bytes per token. The bandwidth is measured here with
NumPy (a reduction over an array far larger than the caches, the best of a few passes): the rate
at which this machine streams data from memory to the cores. Time to first token is the latency of
the prompt: one parallel forward with prefill, P decode steps without it.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from llp_jax import models
from llp_jax.evaluation import decoders as dec
from llp_jax.evaluation import sampling


def memory_bandwidth(gib: float = 1.0, passes: int = 5) -> float:
    """Bytes/s NumPy reads from memory (sum over a `gib` GiB float32 array, best pass)."""
    a = np.ones(int(gib * 2**30) // 4, np.float32)
    best = float("inf")
    for _ in range(passes):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.nbytes / best


def bytes_per_token(cfg: models.ModelConfig, attended: int) -> int:
    """float32 bytes a batch-1 decode step must read: the parameters but the embedding table
    (one row), the output head, and the keys/values of `attended` cached positions per layer."""
    params = models.count_params(cfg)
    embedding = cfg.vocab_size * cfg.d_model
    kv = 2 * cfg.num_layers * attended * cfg.d_model
    return 4 * (params - embedding + kv)


def time_to_first_token(model, prompt_BxP, *, prefill: bool, repeats: int = 3) -> float:
    """Seconds from the prompt to the first sampled token (compiled, best of `repeats`)."""
    decoder = dec.make_decoder(model.cfg, "cached")
    if isinstance(decoder, dec.RingCache):
        decoder = dec.RingCache(slots=decoder.slots, prefill=prefill)
    run = lambda: sampling.generate(model, prompt_BxP, 1, 0, decoder=decoder, temperature=0.0)
    jax.block_until_ready(run())
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(run())
        best = min(best, time.perf_counter() - t)
    return best


def authors_generation_rate(worker, prompt_len: int, counts=(4, 12), repeats: int = 2) -> float:
    """Marginal tokens/s of the authors' `generate` (an `AuthorsWorker`, batch 1)."""
    g1, g2 = counts
    t1 = min(worker.timed(f"generate {prompt_len} {g1}") for _ in range(repeats))
    t2 = min(worker.timed(f"generate {prompt_len} {g2}") for _ in range(repeats))
    return (g2 - g1) / max(t2 - t1, 1e-9)
