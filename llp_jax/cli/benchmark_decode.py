"""Decoding speed: LLP's streaming segment cache vs recomputing the full window for every token.

  python -m experiments.benchmark_decode                       # n = 2048, writes the table below
  python -m experiments.benchmark_decode --seq_len=512 --models=llp,transformer,perceiver_ar

Recomputing the window is what the authors' code does: every new token re-runs the model on the
last n tokens. The cached decoders do one token's work per step (LLP: attention to at most
(k + 1) * s cached keys per layer). Each decoder starts from a prompt of n tokens (a full window:
the steady state) and the figure is the marginal rate, (G2 - G1) / (t(G2) - t(G1)), of two
compiled, warmed-up generations of G1 and G2 tokens, so prompt processing and compilation are
excluded; each time is the fastest of --repeats runs. Untrained weights: the speed does not depend on them. Writes
experiments/results/decode_benchmark.md.

A second table puts LLP at the authors' small config (d = 256, L = 4, H = 4, n = 1024, S = 4,
vocabulary 8192; --limits_*) against the physical limit of a batch-1 decode step, memory
bandwidth (`studies.decode_limits`), gives the time to first token of an n-token prompt with the
one-pass prefill and fed token by token, and, given --authors and --torch_python, the authors'
ECP `generate` timed in the same run:

  python -m experiments.benchmark_decode --authors=PATH/TO/ECPTransformer --torch_python=PY
"""

from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np
from absl import flags

from llp_jax import models, paths
from llp_jax.cli import common
from llp_jax.evaluation import sampling
from llp_jax.studies import decode_limits
from llp_jax.studies.machine import cpu_name
from llp_jax.studies.step_benchmark import StepSpec
from llp_jax.studies.step_workers import AuthorsWorker

_SEQ_LEN = common.count_flag("seq_len", 2048, "n, the model's window.", lower_bound=1)
_SEGMENTS = common.count_flag(
    "segments", 8, "S: LLP segments per window (s = n / S).", lower_bound=1
)
_D_MODEL = common.count_flag("d_model", 128, "Width.", lower_bound=1)
_LAYERS = common.count_flag("num_layers", 4, "Layers.", lower_bound=1)
_MODELS = flags.DEFINE_list("models", ["llp"], "Models to time (llp, transformer, perceiver_ar).")
_CACHED = common.int_list_flag(
    "cached_tokens", [64, 576], "G1, G2 for the cached decoders.", count=2
)
_RECOMPUTE = common.int_list_flag("recompute_tokens", [4, 20], "G1, G2 for recompute.", count=2)
_REPEATS = common.count_flag(
    "repeats", 3, "Timed runs per point; the fastest counts.", lower_bound=1
)
_LIMITS = flags.DEFINE_bool("limits", True, "Add the table at the authors' config.")
_AUTHORS = flags.DEFINE_string("authors", "", "A checkout of MetaMain/ECPTransformer.")
_TORCH = flags.DEFINE_string("torch_python", "", "A Python with torch and einops installed.")
_OUT = common.output_flag("out", "experiments/results/decode_benchmark.md", "Markdown output.")


def model_config(name: str) -> models.ModelConfig:
    """Model `name` at n: LLP with S = --segments segments, latent models with l = n / 8."""
    sizes = models.StructuralSizes(segments=_SEGMENTS.value, latent_div=8)
    return models.sized(
        name, _SEQ_LEN.value, sizes, vocab_size=259, num_layers=_LAYERS.value,
        d_model=_D_MODEL.value, num_heads=4,
    )  # fmt: skip


def timed_generate(model, prompt, num_new: int, method: str) -> tuple[float, np.ndarray]:
    """Seconds for one generation (the fastest of --repeats runs after a compiling warm-up: this
    machine may be shared), and its tokens."""
    run = lambda: sampling.generate(model, prompt, num_new, 0, method=method, temperature=0.0)
    out = jax.block_until_ready(run())
    times = []
    for _ in range(_REPEATS.value):
        t = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - t)
    return min(times), np.asarray(out)


def marginal_rate(model, prompt, method: str, counts) -> tuple[float, np.ndarray]:
    g1, g2 = (int(c) for c in counts)
    t1, _ = timed_generate(model, prompt, g1, method)
    t2, out = timed_generate(model, prompt, g2, method)
    return (g2 - g1) / max(t2 - t1, 1e-9), out


def limits_table() -> list[str]:
    """LLP (clean, code-faithful) at the authors' config vs the bandwidth limit and theirs."""
    spec = StepSpec(batch=1, authors=_AUTHORS.value, torch_python=_TORCH.value)
    n, W = spec.seq_len, 2 * spec.seq_len // spec.segments
    prompt = np.random.default_rng(1).integers(0, spec.vocab_size, (1, n)).astype(np.int32)
    bandwidth = decode_limits.memory_bandwidth()
    worker = AuthorsWorker(spec, 0.0) if _AUTHORS.value else None
    theirs = decode_limits.authors_generation_rate(worker, n) if worker else None
    if worker:
        worker.close()
    rows = []
    for label in ("llp", "llp_faithful"):
        cfg = spec.model_config(label)
        model = models.build(cfg, seed=0)
        rate, _ = marginal_rate(model, prompt, "cached", _CACHED.value)
        limit = bandwidth / decode_limits.bytes_per_token(cfg, W)
        ttft = [decode_limits.time_to_first_token(model, prompt, prefill=p) for p in (True, False)]
        rows.append((label, rate, limit, *ttft))
        print(f"{label}: {rate:,.1f} tok/s of {limit:,.0f} (bandwidth), TTFT {ttft[0]:.3f} s "
              f"prefilled vs {ttft[1]:.3f} s token by token")  # fmt: skip
    head = "| model | cached tok/s | bandwidth limit tok/s | of limit | TTFT prefill | TTFT fed |"
    table = [head, "|---|---|---|---|---|---|"]
    for label, rate, limit, t_pre, t_fed in rows:
        table.append(f"| {label} | {rate:,.1f} | {limit:,.0f} | {rate / limit:.0%} | "
                     f"{t_pre:.3f} s | {t_fed:.3f} s |")  # fmt: skip
    if theirs:
        table.append(f"| authors' ECP `generate` (recompute) | {theirs:,.2f} | | | | |")
        table += ["", f"Ours (code-faithful) / theirs: {rows[1][1] / theirs:,.0f}x tokens/s."]
    return [
        "## LLP at the authors' config against the memory-bandwidth limit",
        "",
        (f"d = {spec.d_model}, L = {spec.num_layers}, H = {spec.num_heads}, n = {n}, S = "
         f"{spec.segments} (s = {n // spec.segments}, W = {W} cached keys/layer), vocabulary "
         f"{spec.vocab_size}, batch 1, float32, prompt of n tokens. Limit = measured read "
         f"bandwidth {bandwidth / 1e9:.1f} GB/s (NumPy) / float32 bytes a step must read "
         "(parameters but the embedding, the head, W keys and values per layer; "
         "`llp_jax/studies/decode_limits.py`). TTFT = time to first token: one parallel forward "
         "of the prompt (prefill) vs the prompt fed token by token."),
        "",
        *table,
        "",
    ]  # fmt: skip


def main(argv):
    common.start(argv)
    for flag in (_CACHED, _RECOMPUTE):
        g1, g2 = (int(v) for v in flag.value)
        if not g1 < g2:
            sys.exit(f"error: --{flag.name}={g1},{g2}: the first count must be below the second")
    if bool(_AUTHORS.value) != bool(_TORCH.value):
        sys.exit("error: --authors and --torch_python go together")
    if _AUTHORS.value and not os.path.isfile(
        os.path.join(_AUTHORS.value, "models", "ECPAttentionTransformer.py")
    ):
        sys.exit(f"error: --authors={_AUTHORS.value} is not a checkout of MetaMain/ECPTransformer")
    n = _SEQ_LEN.value
    if "llp" in _MODELS.value and n % _SEGMENTS.value:
        sys.exit(f"error: --seq_len={n} must be a multiple of --segments={_SEGMENTS.value} "
                 "(llp's segment length s = n / S)")  # fmt: skip
    if set(_MODELS.value) & set(models.LATENT_MODELS) and n % 8:
        sys.exit(f"error: --seq_len={n} must be a multiple of 8 (the latent models' l = n / 8)")
    prompt = np.random.default_rng(0).integers(0, 256, size=(1, n)).astype(np.int32)
    rows = []
    for name in _MODELS.value:
        cfg = model_config(name)
        model = models.build(cfg, seed=0)
        cached, out_c = marginal_rate(model, prompt, "cached", _CACHED.value)
        recompute, out_r = marginal_rate(model, prompt, "recompute", _RECOMPUTE.value)
        # Both see the same n-token window for the first new token.
        assert out_c[0, n] == out_r[0, n], "cached and recompute disagree on the first token"
        detail = {
            "llp": f"s={cfg.segment_len}, cache {2 * cfg.segment_len} keys/layer",
            "transformer": "KV cache of every position",
            "perceiver_ar": f"l={cfg.latent_len}, refill every l tokens",
        }.get(name, "")
        rows.append((name, detail, cached, recompute))
        print(
            f"{name}: cached {cached:,.1f} tok/s, recompute {recompute:,.2f} tok/s, "
            f"speed-up {cached / recompute:,.1f}x"
        )
    params = models.count_params(model_config(_MODELS.value[0]))
    lines = [
        "# Decoding speed: cached decoders vs recomputing the window per token",
        "",
        f"Command: `{common.command_line('benchmark_decode')}`",
        "",
        (
            f"n = {n}, d = {_D_MODEL.value}, L = {_LAYERS.value}, H = 4, byte vocabulary (259); "
            f"{params:,} parameters ({_MODELS.value[0]}); batch 1, greedy, float32; prompt of n "
            "tokens; marginal tokens/s between "
            f"{'/'.join(_CACHED.value)} (cached) and {'/'.join(_RECOMPUTE.value)} (recompute) new "
            f"tokens. Machine: {cpu_name()}, {os.cpu_count()} CPU "
            f"cores, jax {jax.__version__} on {jax.devices()[0].platform}; 1-minute load average "
            f"{os.getloadavg()[0]:.1f} at the end (a shared machine: other jobs slow both columns)."
        ),
        "",
        "| model | cached decoder | cached tok/s | recompute tok/s | speed-up |",
        "|---|---|---|---|---|",
        *[f"| {m} | {d} | {c:,.1f} | {r:,.2f} | {c / r:,.1f}x |" for m, d, c, r in rows],
        "",
        *(limits_table() if _LIMITS.value else []),
    ]
    text = "\n".join(lines)
    print(text)
    paths.write_text(_OUT.value, text)


def entry():
    """The `llp-benchmark-decode` console script."""
    common.run(main)


if __name__ == "__main__":
    entry()
