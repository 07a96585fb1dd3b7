"""The train step against the limit: tokens/s, model FLOPs, utilisation of the measured matmul
peak, a per-op breakdown, and the authors' ECP step timed alternately with ours.

  python -m experiments.benchmark_step                          # ours only
  python -m experiments.benchmark_step --authors=PATH/TO/ECPTransformer \
      --torch_python=PATH/TO/python                             # + theirs (needs torch, einops)
  python -m experiments.benchmark_step --xla_flag_set=--xla_cpu_use_onednn=true  # + XLA flags

Writes experiments/results/step_benchmark.md (and .json). See llp_jax/studies/step_benchmark.py.
"""

from __future__ import annotations

import os
import time

from absl import flags

from llp_jax import paths, strict_json
from llp_jax.cli import common
from llp_jax.studies import step_benchmark, step_report

_VARIANTS = flags.DEFINE_list("variants", list(step_benchmark.VARIANTS),
                              f"Ours to time, of {list(step_benchmark.VARIANTS)}.")  # fmt: skip
_ROUNDS = common.count_flag(
    "rounds", 5, "Timed rounds (one step of every variant each).", lower_bound=1
)
_BATCH = common.count_flag("batch", 8, "Batch size.", lower_bound=1)
_SEQ = common.count_flag("seq_len", 1024, "n.", lower_bound=1)
_SEGMENTS = common.count_flag("segments", 4, "LLP segments per window (s = n / S).", lower_bound=1)
_AUTHORS = flags.DEFINE_string("authors", "", "A checkout of MetaMain/ECPTransformer.")
_TORCH = flags.DEFINE_string("torch_python", "", "A Python with torch and einops installed.")
_FLAG_SETS = flags.DEFINE_multi_string(
    "xla_flag_set",
    [],
    "An XLA_FLAGS value to try (repeatable): --flag_variants then also run in "
    "worker processes under the default flags and under each set, in the same rounds.",
)
_FLAG_VARIANTS = flags.DEFINE_list(
    "flag_variants", ["llp_faithful"], "Variants (of --variants) to time under each --xla_flag_set."
)
_OUT = common.output_flag(
    "out", "experiments/results/step_benchmark.md", "Markdown output.", also=(".json",)
)


def main(argv):
    common.start(argv)
    with common.one_line_errors():
        _main()


def _main() -> None:
    unknown = set(_VARIANTS.value) - set(step_benchmark.VARIANTS)
    if unknown:
        raise common.UsageError(f"--variants: unknown {sorted(unknown)}; choose from "
                                f"{list(step_benchmark.VARIANTS)}")  # fmt: skip
    if _FLAG_SETS.value and not set(_FLAG_VARIANTS.value) <= set(_VARIANTS.value):
        raise common.UsageError(f"--flag_variants={','.join(_FLAG_VARIANTS.value)} must be "
                                f"among --variants={','.join(_VARIANTS.value)}")  # fmt: skip
    if bool(_AUTHORS.value) != bool(_TORCH.value):
        raise common.UsageError("--authors and --torch_python go together")
    if _AUTHORS.value and not os.path.isfile(
        os.path.join(_AUTHORS.value, "models", "ECPAttentionTransformer.py")
    ):
        raise common.UsageError(f"--authors={_AUTHORS.value} is not a checkout of "
                                "MetaMain/ECPTransformer (no models/ECPAttentionTransformer.py)")  # fmt: skip
    if _ROUNDS.value < 1 or _BATCH.value < 1:
        raise common.UsageError("--rounds and --batch must be >= 1")
    if _SEQ.value % _SEGMENTS.value:
        raise common.UsageError(f"--seq_len={_SEQ.value} must be a multiple of --segments="
                                f"{_SEGMENTS.value} (llp's segment length s = n / S)")  # fmt: skip
    spec = step_benchmark.StepSpec(
        variants=tuple(_VARIANTS.value), rounds=_ROUNDS.value, batch=_BATCH.value,
        seq_len=_SEQ.value, segments=_SEGMENTS.value, authors=_AUTHORS.value,
        torch_python=_TORCH.value, flag_sets=tuple(_FLAG_SETS.value),
        flag_variants=tuple(_FLAG_VARIANTS.value),
    )  # fmt: skip
    start = time.perf_counter()
    result = step_benchmark.run(spec)
    command = common.command_line("benchmark_step")
    text = step_report.markdown(result, command, time.perf_counter() - start)
    paths.write_text(_OUT.value, text)
    paths.write_text(os.path.splitext(_OUT.value)[0] + ".json",
                     strict_json.dumps({"command": command, **result}, indent=1))  # fmt: skip
    print(text)


def entry() -> None:
    common.run(main)


if __name__ == "__main__":
    entry()
