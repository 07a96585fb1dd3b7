"""Trains every zoo model with the same budget on the embedded corpus and compares them.

  python -m experiments.compare                # every variant (--estimate projects the run time)
  python -m experiments.compare --quick        # 2 tiny models, a few steps: a smoke test
  python -m experiments.compare --estimate     # short run of each variant -> projected runtime
  python -m experiments.compare --study=small  # the paper's claims: seeds, budgets, context use
  python -m experiments.compare --study=small --variants=llp   # one chunk: llp's runs only

Writes experiments/results/compare.md (the table) and compare.png (validation loss vs step).
Workdirs go under --workroot (git-ignored); a rerun reuses every variant that finished with the
same settings, so an interrupted comparison continues where it stopped (--rerun: start over).
See llp_jax/studies/compare.py for what is compared and how; a study (llp_jax/studies/study.py)
writes experiments/results/study.md, study.json and three plots from every run finished so far.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import jax
from absl import flags

from llp_jax.cli import common
from llp_jax.studies import compare, compare_report, compare_spec, study, study_report, study_spec
from llp_jax.training.interruptions import EXIT_CODES

_QUICK = flags.DEFINE_bool("quick", False, "The few-minute smoke version (2 tiny models).")
_ESTIMATE = flags.DEFINE_bool("estimate", False, "Only project the runtime from short runs.")
_VARIANTS = flags.DEFINE_list(
    "variants", None, f"Subset of {[v.label for v in compare_spec.VARIANTS]}, or of the extra rows "
    f"{[v.label for v in (*compare_spec.CODE_VARIANTS, *compare_spec.PRECISION_VARIANTS)]}.",
)  # fmt: skip
_STEPS = common.count_flag(
    "num_steps",
    None,
    "Override the number of training steps (with --study: of the 'tokens' "
    "budget, which the other budgets scale).",
    lower_bound=1,
)
_WORKROOT = flags.DEFINE_string("workroot", None, "Workdirs ('' = experiments/results/work/...).")
_OUT = common.output_flag(
    "out", None, "Markdown output (default experiments/results/compare.md).", also=(".json", ".png")
)
_RERUN = flags.DEFINE_bool("rerun", False, "Retrain variants that already finished.")
_STUDY = flags.DEFINE_string(
    "study", None, f"Run a study ({', '.join(study_spec.STUDIES)}) instead."
)
_KINDS = flags.DEFINE_list("study_runs", None, "With --study: only these kinds of run (tokens, "
                           "targets, subword, depth, recipe).")  # fmt: skip
_TRAIN = flags.DEFINE_bool("study_train", True, "With --study: train missing runs (--nostudy_train: "
                           "only rewrite the report from the finished ones).")  # fmt: skip
_CACHE = common.compilation_cache_flag()


def main(argv):
    try:
        _main(argv)
    except compare.RunInterrupted as e:  # the run saved its step; the rest waits for a rerun
        print(e, file=sys.stderr)
        sys.exit(EXIT_CODES.get(e.signal, 0))


def _main(argv):
    common.start(argv)
    common.use_compilation_cache(_CACHE.value)
    unknown = [v for v in _VARIANTS.value or () if v not in compare_spec.VARIANTS_BY_LABEL]
    if unknown:
        sys.exit(f"error: --variants: {unknown} unknown; choose from "
                 f"{sorted(compare_spec.VARIANTS_BY_LABEL)}")  # fmt: skip
    bad_kinds = sorted(set(_KINDS.value or ()) - set(study_spec.KINDS))
    if bad_kinds:
        sys.exit(f"error: --study_runs: {bad_kinds} unknown; choose from {list(study_spec.KINDS)}")
    if _STUDY.value and _STUDY.value not in study_spec.STUDIES:
        sys.exit(f"error: --study={_STUDY.value!r} must be one of {sorted(study_spec.STUDIES)}")
    if _STUDY.value:
        return run_study(_STUDY.value)
    spec = compare_spec.QUICK if _QUICK.value else compare_spec.CompareSpec()
    if _VARIANTS.value:
        spec = dataclasses.replace(spec, variants=tuple(_VARIANTS.value))
    if _STEPS.value:
        spec = dataclasses.replace(spec, num_steps=_STEPS.value)
    kind = "quick" if _QUICK.value else "estimate" if _ESTIMATE.value else "full"
    workroot = _WORKROOT.value or os.path.join("experiments/results/work", kind)
    default_out = "experiments/results/compare.md" if kind == "full" else f"{workroot}/compare.md"
    out = _OUT.value or default_out
    devices = jax.devices()[:1]  # one device: the memory and speed figures are per device
    start = time.perf_counter()
    with common.one_line_errors():
        if _ESTIMATE.value:
            projected = compare.estimate_runtime(spec, workroot, devices=devices)
            print(f"projected full comparison: {sum(projected.values()) / 60:.0f} min")
            return
        rows = compare.run_comparison(spec, workroot, rerun=_RERUN.value, devices=devices)
    command = common.command_line("compare")
    print(compare_report.write_results(rows, spec, out, command, time.perf_counter() - start))


def run_study(name: str) -> None:
    """One invocation of a study: its missing runs (of --variants, or all), then the report."""
    spec = study_spec.STUDIES[name]
    if _STEPS.value:  # another 'tokens' budget: every run of it is another run (another cache)
        spec = dataclasses.replace(
            spec, base=dataclasses.replace(spec.base, num_steps=_STEPS.value)
        )
    only = tuple(_VARIANTS.value) if _VARIANTS.value else None
    workroot = _WORKROOT.value or os.path.join("experiments/results/work", f"study_{name}")
    default_out = "experiments/results/study.md" if name == "small" else f"{workroot}/study.md"
    start = time.perf_counter()
    with common.one_line_errors():
        kinds = tuple(_KINDS.value) if _KINDS.value else None
        kinds = kinds if _TRAIN.value else ()  # no kind chosen: finished rows only
        out = _OUT.value or default_out
        ledger = study.read_ledger(os.path.splitext(out)[0] + ".json")
        command = common.command_line("compare")

        def report(rows):
            return study_report.write(spec, rows, out, command, time.perf_counter() - start)

        def after_run(rows):  # a stopped invocation loses only the run under way
            try:
                report(rows)
            except Exception as e:  # noqa: BLE001 - a partial report must not stop the study
                print(f"warning: the report of {len(rows)} runs was not written: {e}")

        rows = study.run_study(spec, workroot, only=only, kinds=kinds, rerun=_RERUN.value,
                               ledger=ledger, devices=jax.devices()[:1], on_run=after_run)  # fmt: skip
    text = report(rows)
    print(text)


def entry():
    """The `llp-compare` console script."""
    common.run(main)


if __name__ == "__main__":
    entry()
