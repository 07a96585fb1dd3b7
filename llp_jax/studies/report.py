"""What a training run reports at its end: validation perplexity vs the unigram baseline,
throughput, the loss plot and a generated sample (summary.json, loss.png); and
`train_and_evaluate`, the whole run as `experiments/train.py` runs it."""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llp_jax import configs, models, paths, strict_json
from llp_jax.data import unigram_perplexity
from llp_jax.evaluation import sample_settings
from llp_jax.evaluation.sample_settings import END_OF_DOCUMENT, SampleConfig, document_end, shown
from llp_jax.evaluation.sampling import generate
from llp_jax.models.inputs import seed_key
from llp_jax.models.losses import perplexity, perplexity_text
from llp_jax.storage import read_jsonl
from llp_jax.training import trainer
from llp_jax.training.distributed import any_process, gather_to_host
from llp_jax.training.interruptions import TrainingInterrupted


def train_and_evaluate(config, workdir: str, *, resume: bool = True, devices=None,
                       allow_data_change: bool = False) -> dict:  # fmt: skip
    """Trains `config` in `workdir`, then reports; returns the summary (also in summary.json).
    `config` is an experiment ConfigDict or a config file spec ("llp_jax/configs/tiny.py:llp",
    see `llp_jax.configs.load`). Ctrl-C saves the step and raises `TrainingInterrupted` (a
    KeyboardInterrupt); a run stopped by SIGTERM or SIGHUP returns the loop's progress (nothing
    is reported); a run that had nothing left to train returns the summary already there,
    untouched."""
    if isinstance(config, str):
        config = configs.load(config)
    end_sample_settings(config)  # before the data and the hours of training, not after them
    run, progress = trainer.train(
        config, workdir, resume=resume, devices=devices, allow_data_change=allow_data_change,
        close=False, before_loop=lambda run: end_sample_settings(run.config, run.model_cfg),
    )  # fmt: skip
    try:
        if progress["interrupted"] == "SIGINT":
            step = int(jax.device_get(run.state["step"]))
            raise TrainingInterrupted(step, workdir, progress)
        if progress["preempted"]:
            return progress
        return final_report(run, **progress)
    finally:
        run.close()


def final_report(run, *, steps_run: int, wall_s: float, **_) -> dict:
    """Writes summary.json and loss.png, prints perplexity vs baseline and a sample. A run that
    trained no step (it was finished already) keeps the summary.json it has if that summary is
    of the step the checkpoints are at; one of an earlier step (the run that went on stopped
    before its report: preempted, interrupted, crashed) or of no recorded step is replaced by a
    report of the parameters there are."""
    cfg, data, workdir = run.model_cfg, run.data, run.workdir
    summary_path = paths.join(workdir, "summary.json")
    step = run.start_step + steps_run
    if steps_run == 0:
        print(
            f"nothing to train: {workdir} is at step {step} of train.num_steps="
            f"{run.train.num_steps} (raise num_steps to train on)"
        )
        kept = read_summary(summary_path)
        # Every process decides alike: the report below is a collective.
        if not any_process(kept.get("step") != step):
            print(f"its summary: {summary_path}")
            return kept
        was = (
            f"its summary is of step {kept['step']}"
            if "step" in kept
            else "its summary does not say its step"
            if kept
            else "it has no readable summary"
        )
        print(f"{was}: reporting step {step}")
    summary: dict[str, Any] = {"model": cfg.name, "params": models.count_params(cfg), "step": step}
    metrics_path = paths.join(workdir, "metrics.jsonl")
    vals = [r for r in read_jsonl(metrics_path) if "val/loss" in r] if paths.exists(
        metrics_path) else []  # fmt: skip
    on_record = bool(vals) and vals[-1].get("step") == step
    # No validation of these parameters on record (a lost or replaced metrics.jsonl; only
    # process 0 writes it): evaluated now, by every process together (it is a collective).
    if any_process(not on_record):
        summary["val_loss"] = trainer.validation_loss(run)
    else:
        summary["val_loss"] = vals[-1]["val/loss"]
    summary["val_ppl"] = perplexity(summary["val_loss"])
    summary["unigram_val_ppl"] = unigram_perplexity(
        data.tokens["train"], data.tokens["validation"], data.tokenizer.vocab_size
    )
    summary["steps_run"], summary["wall_s"] = steps_run, round(wall_s, 1)
    tokens = steps_run * run.train.batch_size * cfg.seq_len
    summary["train_tokens_per_s"] = round(tokens / max(wall_s, 1e-9), 1)
    summary["plot"] = paths.join(workdir, "loss.png")
    summary["sample"] = end_of_run_sample(run)
    if jax.process_index() == 0:
        plot_losses(metrics_path, summary["plot"], title=f"{cfg.name} on {data.corpus.name}")
        paths.write_text(summary_path, strict_json.dumps(summary, indent=2))
        print(
            f"\nvalidation perplexity {perplexity_text(summary['val_ppl'])} "
            f"(unigram baseline {perplexity_text(summary['unigram_val_ppl'])}, tokenizer {data.tokenizer.name})"
            + (
                f"\n{steps_run} steps in {wall_s:.0f} s, {summary['train_tokens_per_s']:,.0f} tokens/s;"
                if steps_run
                else ""
            )
            + f"\nloss plot: {summary['plot']}\nsample:\n{shown(summary['sample'])}"
        )
    return summary


def read_summary(path: str) -> dict:
    """The summary.json there is, or {} where there is none or it does not read as one (a
    summary is rewritten, never trusted, when it is not of the checkpoints' step)."""
    try:
        summary = strict_json.loads(paths.read_text(path)) if paths.exists(path) else {}
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def end_sample_settings(config, model_cfg=None) -> SampleConfig:
    """`config.sample`, the end-of-run sample's settings, checked as `experiments.sample` checks
    its flags (against the vocabulary once `model_cfg` is known). The report read them only
    after the training: a `sample.top_p=2` or a `sample.top_k` past the vocabulary failed the
    run at its end, with no summary written."""
    section = config["sample"] if hasattr(config, "keys") and "sample" in config.keys() else None
    sample = SampleConfig.from_any(section)
    if sample.num_tokens:
        sample_settings.check_sampling(
            num_new=sample.num_tokens, temperature=sample.temperature, top_k=sample.top_k,
            top_p=sample.top_p, seed=sample.seed, prefix="sample.", new_name="num_tokens",
            vocab_size=getattr(model_cfg, "vocab_size", None),
        )  # fmt: skip
    return sample


def end_of_run_sample(run) -> str:
    """A short continuation of `config.sample.prompt` from the trained parameters, ending at the
    end-of-document token as `experiments.sample` does (`sample_settings.document_end`)."""
    sample = end_sample_settings(run.config)
    if not sample.num_tokens:
        return ""
    model = nnx.merge(run.graphdef, gather_to_host(run.state["params"]))
    prompt = jnp.asarray(run.data.tokenizer.encode(sample.prompt or run.data.opening_words()))[None]
    out = generate(  # the model's cached decoder where it has one
        model, prompt, sample.num_tokens, seed_key(sample.seed),
        temperature=sample.temperature, top_k=sample.top_k, top_p=sample.top_p,
        pad_id=int(run.data.tokenizer.pad_id), stop_id=(stop := document_end(run.data)),
    )  # fmt: skip
    ids = np.asarray(out[0])
    ended = stop is not None and (ids[prompt.shape[1] :] == stop).any()
    return run.data.tokenizer.decode(ids) + (f"\n{END_OF_DOCUMENT}" if ended else "")


def plot_losses(
    jsonl_path: str | os.PathLike,
    png_path: str | os.PathLike,
    *,
    train_key: str = "train/loss",
    val_key: str = "val/loss",
    title: str | None = None,
) -> None:
    """Plots train and validation loss against step from a metrics JSONL file to a PNG."""
    # An explicit Agg canvas instead of pyplot: headless, and it leaves a notebook's backend alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_jsonl(jsonl_path)
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, style in ((train_key, "-"), (val_key, "o-")):
        points = [(r["step"], r[key]) for r in records
                  if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]  # fmt: skip
        if points:
            steps, values = zip(*sorted(points))
            ax.plot(steps, values, style, label=key, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title or os.path.basename(os.path.dirname(os.fspath(paths.resolve(jsonl_path)))))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    paths.write_figure(png_path, fig, dpi=120)
