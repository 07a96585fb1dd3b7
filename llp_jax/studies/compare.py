"""Every zoo model trained with the same budget on the embedded corpus, then evaluated alike.

What `experiments/compare.py` does, as library functions. All variants share width, depth,
heads, the window n, the optimiser and its schedule, the batch and the number of steps, so each
sees the same input tokens (batch x n per step). What differs is where the loss is taken: the
transformer, llp and s2attn score all n positions of a window, the latent models
(perceiver_ar, enhanced_v1..v3) only their last l, so they get fewer loss targets per step from
the same input. Each variant trains with the trainer (`training.trainer.setup` / `train_loop`)
in its own workdir, then is evaluated on the validation and test splits with the standard
protocol (every target once) and the paper's (see `evaluation.perplexity`).

Reported per variant: parameters; attention pairs per window (all layers, per head) counted
from the masks the model really uses (`benchmark.attention_pairs`); perplexities; training
tokens/s (median over logging intervals, so compilation is excluded); and the peak memory of
the compiled train step (XLA's buffer plan).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from llp_jax import models, strict_json
from llp_jax.evaluation import runner
from llp_jax.models.losses import perplexity_text
from llp_jax.storage import read_jsonl
from llp_jax.studies.benchmark import MIB, attention_pairs, peak_bytes
from llp_jax.studies.compare_spec import (
    VARIANTS_BY_LABEL,
    CompareSpec,
    Variant,
    experiment_config,
)
from llp_jax.studies.workdirs import (
    ROW_FILE,
    SPEC_FILE,
    clear_stale,
    ensure_ignored,
    finished_row,
    workdir_name,
)
from llp_jax.training import mesh as mesh_lib
from llp_jax.training import trainer


class RunInterrupted(Exception):
    """SIGTERM or Ctrl-C reached a run: its step is saved, no row is written, and the comparison
    or study stops (rerunning the command resumes that run from the saved step)."""

    def __init__(self, signal: str, label: str, step: int, workdir: str):
        self.signal = signal
        super().__init__(f"{signal}: saved {label} at step {step} in {workdir}; rerun the same "
                         "command to continue")  # fmt: skip


def compiled_peak_mib(run: trainer.Run) -> float | None:
    """Peak memory of the run's compiled train step (arguments + outputs - donated + temps)."""
    B, n = run.train.batch_size, run.model_cfg.seq_len
    batch_spec = jax.ShapeDtypeStruct((B, n), jnp.int32, sharding=mesh_lib.batch_sharding(run.mesh))
    compiled = run.train_step.lower(run.state, {"inputs": batch_spec, "targets": batch_spec})
    peak = peak_bytes(compiled.compile())
    return None if peak is None else peak / MIB


def training_tokens_per_s(metrics_path: str) -> float | None:
    """Median tokens/s over logging intervals, the first (compilation) left out."""
    rates = [r["train/tokens_per_s"] for r in read_jsonl(metrics_path) if "train/tokens_per_s" in r]
    rates = rates[1:] or rates
    return statistics.median(rates) if rates else None


def run_variant(
    spec: CompareSpec,
    variant: Variant,
    workdir: str,
    *,
    devices=None,
    log: Callable[[str], None] = print,
    extra: Callable[[trainer.Run, dict, models.ModelConfig], dict] | None = None,
    protocols: Sequence[str] = ("standard", "paper"),
) -> dict:
    """Trains (or resumes) one variant in `workdir`, evaluates it under `protocols`, writes and
    returns its row (`extra(run, params, cfg)` adds the study's measurements)."""
    config = experiment_config(spec, variant)
    start = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, SPEC_FILE), "w") as f:
        json.dump(dataclasses.asdict(spec), f)
    run = trainer.setup(config, workdir, devices=devices)
    row = {
        "label": variant.label,
        "spec": dataclasses.asdict(spec),
        "model": models.config.as_dict(run.model_cfg),
        "params": models.count_params(run.model_cfg),
        "pairs_per_window": attention_pairs(run.model_cfg),
        "loss_positions": run.model_cfg.scored_len,
        "peak_mib": compiled_peak_mib(run),
    }
    try:
        progress = trainer.train_loop(run)
    finally:
        run.ckpt.close()
    if progress["interrupted"]:
        step = int(jax.device_get(run.state["step"]))
        raise RunInterrupted(progress["interrupted"], variant.label, step, workdir)
    row["train_s"] = progress["wall_s"]
    row["tokens_per_s"] = training_tokens_per_s(os.path.join(workdir, "metrics.jsonl"))
    params = jax.device_get(run.state["params"])
    t = time.perf_counter()
    row.update(evaluate_row(spec, run, params, run.model_cfg, protocols))
    # The same trained model evaluated the other ways its class declares (S^2-Attn: shifted
    # masks at evaluation, beside LongLoRA's dense protocol).
    row["alternatives"] = {
        name: evaluate_row(spec, run, params, run.model_cfg.replace(**changes), protocols)
        for name, changes in run.model_cfg.model_class.inference_alternatives.items()
    }
    if extra is not None:
        row.update(extra(run, params, run.model_cfg))
    row["eval_s"] = time.perf_counter() - t
    row["total_s"] = time.perf_counter() - start
    with open(os.path.join(workdir, ROW_FILE), "w") as f:
        f.write(strict_json.dumps(row, indent=2))
    log(
        f"{variant.label}: val ppl {perplexity_text(row['validation_standard_ppl'])} (paper "
        f"{perplexity_text(row.get('validation_paper_ppl'))}), {row['tokens_per_s'] or 0:,.0f} tok/s, "
        f"{row['total_s']:.0f} s"
    )
    return row


def evaluate_row(spec: CompareSpec, run: trainer.Run, params, cfg: models.ModelConfig,
                 protocols: Sequence[str] = ("standard", "paper")) -> dict:  # fmt: skip
    """Perplexities (`protocols`, validation and test) of trained `params` under the model
    config `cfg` (the trained one, or another way of evaluating it)."""
    model = nnx.merge(nnx.split(models.abstract_model(cfg))[0], params)
    setup = runner.Setup(model, cfg, run.data, f"trained in {run.workdir}")
    row = {}
    for split in ("validation", "test"):
        results = runner.evaluate(
            setup, split=split, protocols=list(protocols), max_tokens=spec.eval_tokens
        )
        for r in results:
            row[f"{split}_{r.protocol}_ppl"] = r.perplexity
            row[f"{split}_{r.protocol}_loss"] = r.loss
            row[f"{split}_{r.protocol}_bits_per_byte"] = r.bits_per_byte
    return row


def run_comparison(
    spec: CompareSpec,
    workroot: str,
    *,
    rerun: bool = False,
    devices=None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Runs every variant of `spec` under `workroot/<label>`; finished rows are reused unless
    `rerun` (a stale workdir of another spec is trained afresh)."""
    workroot = os.path.abspath(workroot)  # Orbax wants absolute checkpoint paths
    ensure_ignored(workroot)
    rows = []
    for label in spec.variants:
        variant = VARIANTS_BY_LABEL[label]
        workdir = os.path.join(workroot, workdir_name(label))
        row = None if rerun else finished_row(spec, workdir)
        if row is None:
            if rerun and os.path.isdir(workdir):
                shutil.rmtree(workdir)
            clear_stale(spec, workdir)
            log(f"--- {label}")
            row = run_variant(spec, variant, workdir, devices=devices, log=log)
        else:
            log(f"--- {label}: reusing the finished run in {workdir}")
        row["workdir"] = workdir
        rows.append(row)
        for name, figures in row.get("alternatives", {}).items():
            rows.append({**row, **figures, "label": f"{label} ({name})", "derived": True})
    return rows


def estimate_runtime(
    spec: CompareSpec, workroot: str, *, steps: int = 8, devices=None, log=print
) -> dict[str, float]:
    """Projected seconds per variant for `spec`, from a short run of each (`steps` steps and a
    quarter of the evaluation tokens) under `workroot`: fixed costs (set-up, compiles, the
    pair count) + spec.num_steps x the measured step time + 4 x the measured evaluation time
    (an over-estimate: evaluation compiles once, not four times)."""
    short = dataclasses.replace(
        spec, num_steps=steps, eval_every=steps, eval_tokens=max(spec.eval_tokens // 4, 1024)
    )
    scale = (spec.eval_tokens or 10**9) / short.eval_tokens
    out = {}
    for row in run_comparison(short, workroot, rerun=True, devices=devices, log=log):
        step_s = spec.batch_size * spec.seq_len / row["tokens_per_s"]
        fixed = max(row["total_s"] - row["eval_s"] - steps * step_s, 0.0)
        out[row["label"]] = fixed + spec.num_steps * step_s + scale * row["eval_s"]
        log(
            f"{row['label']}: {step_s:.2f} s/step, fixed {fixed:.0f} s, evaluation "
            f"{row['eval_s']:.0f} s for {short.eval_tokens:,} tokens/split -> "
            f"{out[row['label']] / 60:.1f} min"
        )
    return out
