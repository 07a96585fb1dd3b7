"""Train-step time, forward time and peak memory vs sequence length at equal tokens per step.

  python -m experiments.benchmark                    # the full grid of experiments/results/benchmark.md
  python -m experiments.benchmark --seq_lens=256,512 --tokens_per_step=1024 --models=llp \
      --out=/tmp/bench.md

Writes experiments/results/benchmark.md (table, fitted exponents, the issue's targets) and a
log-log PNG beside it. See llp_jax/studies/benchmark.py for what is measured and how.
"""

from __future__ import annotations

import os
import time

from absl import flags

from llp_jax.cli import common
from llp_jax.studies import benchmark, benchmark_report

_D = benchmark.BenchSpec()
_MODELS = flags.DEFINE_list("models", list(_D.models), "Models to measure.")
_SEQ_LENS = common.int_list_flag("seq_lens", _D.seq_lens, "Sequence lengths n.")
_TOKENS = common.count_flag(
    "tokens_per_step", _D.tokens_per_step, "Tokens per train step.", lower_bound=1
)
_D_MODEL = common.count_flag("d_model", _D.d_model, "Width.", lower_bound=1)
_LAYERS = common.count_flag("num_layers", _D.num_layers, "Layers.", lower_bound=1)
_HEADS = common.count_flag("num_heads", _D.num_heads, "Heads.", lower_bound=1)
_SEGMENT = common.count_flag("segment_len", _D.segment_len, "llp segment length s.", lower_bound=1)
_LATENT = common.count_flag("latent_len", _D.latent_len, "perceiver_ar latents l.", lower_bound=1)
_GROUP = common.count_flag("group_len", _D.group_len, "s2attn group G (0 = n / 4).", lower_bound=0)
_IMPL = flags.DEFINE_string("attention_impl", _D.attention_impl, "ModelConfig.attention_impl.")
_STEPS = common.count_flag("steps", _D.steps, "Timed steps per point (median).", lower_bound=1)
_BUDGET = flags.DEFINE_float(
    "point_budget_s", _D.point_budget_s, "Timing seconds per point.", lower_bound=0
)
_MAX_GIB = flags.DEFINE_float(
    "max_gib", _D.max_gib, "Do not run points planned above this.", lower_bound=0
)
_ISOLATE = flags.DEFINE_bool("isolate", True, "Measure each point in its own process.")
_OUT = common.output_flag(
    "out", "experiments/results/benchmark.md", "Markdown output.", also=(".json",)
)
_PNG = common.output_flag("png", "", "PNG output ('' = the --out path with .png).")
_CACHE = common.compilation_cache_flag()


def main(argv):
    common.start(argv)
    common.use_compilation_cache(_CACHE.value)  # the per-point processes' too
    spec = benchmark.BenchSpec(
        models=tuple(_MODELS.value),
        seq_lens=tuple(int(n) for n in _SEQ_LENS.value),
        tokens_per_step=_TOKENS.value,
        d_model=_D_MODEL.value,
        num_layers=_LAYERS.value,
        num_heads=_HEADS.value,
        segment_len=_SEGMENT.value,
        latent_len=_LATENT.value,
        group_len=_GROUP.value,
        attention_impl=_IMPL.value,
        steps=_STEPS.value,
        point_budget_s=_BUDGET.value,
        max_gib=_MAX_GIB.value,
    )
    start = time.perf_counter()
    rows = benchmark.run_benchmark(spec, isolate=_ISOLATE.value)
    png = _PNG.value or os.path.splitext(_OUT.value)[0] + ".png"
    command = common.command_line("benchmark")
    text = benchmark_report.write_results(
        rows, spec, _OUT.value, png, command, time.perf_counter() - start
    )
    print(text)


def entry():
    """The `llp-benchmark` console script."""
    common.run(main)


if __name__ == "__main__":
    entry()
