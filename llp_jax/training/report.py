"""What a run reports: in-training validation loss, and the end-of-run summary (validation
perplexity vs the unigram baseline, throughput, loss plot, a generated sample)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from llp_jax import models
from llp_jax.data import make_global_batch, unigram_perplexity
from llp_jax.evaluation.sampling import generate
from llp_jax.training.distributed import fetch
from llp_jax.training.metrics import plot_losses, read_jsonl


def evaluate_windows(
    eval_step, params, tokens_N: np.ndarray, seq_len: int, batch_size: int, max_batches: int,
    sharding,
) -> float:  # fmt: skip
    """Mean loss over the first non-overlapping windows of a stream: a cheap in-training estimate
    (llp_jax.evaluation has the full perplexity protocols)."""
    num = min((len(tokens_N) - 1) // seq_len, max_batches * batch_size)
    num = num // batch_size * batch_size
    if num == 0:
        return float("nan")
    windows = np.stack([tokens_N[s : s + seq_len + 1] for s in np.arange(num) * seq_len])
    nll, count = 0.0, 0.0
    for i in range(0, num, batch_size):
        # Each process contributes its own rows of the global batch.
        chunk = windows[i : i + batch_size][jax.process_index() :: jax.process_count()]
        batch = make_global_batch({"inputs": chunk[:, :-1], "targets": chunk[:, 1:]}, sharding)
        out = eval_step(params, batch)
        nll, count = nll + float(out["nll_sum"]), count + float(out["tokens"])
    return nll / count


def final_report(run, *, steps_run: int, wall_s: float, preempted: bool = False) -> dict:
    """Writes summary.json and loss.png, prints perplexity vs baseline and a sample."""
    cfg, data, workdir = run.model_cfg, run.data, run.workdir
    summary: dict[str, Any] = {"model": cfg.name, "params": models.count_params(cfg)}
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    vals = [r for r in read_jsonl(metrics_path) if "val/loss" in r] if os.path.exists(
        metrics_path) else []  # fmt: skip
    if vals:
        summary["val_loss"] = vals[-1]["val/loss"]
        summary["val_ppl"] = math.exp(summary["val_loss"])
    summary["unigram_val_ppl"] = unigram_perplexity(
        data.tokens["train"], data.tokens["validation"], data.tokenizer.vocab_size
    )
    summary["steps_run"], summary["wall_s"] = steps_run, round(wall_s, 1)
    tokens = steps_run * int(run.config.train.batch_size) * cfg.seq_len
    summary["train_tokens_per_s"] = round(tokens / max(wall_s, 1e-9), 1)
    summary["plot"] = os.path.join(workdir, "loss.png")
    summary["sample"] = sample_text(run)
    if jax.process_index() == 0:
        plot_losses(metrics_path, summary["plot"], title=f"{cfg.name} on {data.corpus.name}")
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        print(
            f"\nvalidation perplexity {summary.get('val_ppl', float('nan')):.3f} "
            f"(unigram baseline {summary['unigram_val_ppl']:.3f}, tokenizer {data.tokenizer.name})"
            f"\n{steps_run} steps in {wall_s:.0f} s, {summary['train_tokens_per_s']:,.0f} tokens/s;"
            f" loss plot: {summary['plot']}\nsample:\n{summary['sample']}"
        )
    return summary


def sample_text(run) -> str:
    """A short continuation of `config.sample.prompt` from the trained parameters."""
    sample = run.config.get("sample", ml_collections.ConfigDict())
    model = nnx.merge(run.graphdef, fetch(run.state["params"]))
    prompt = jnp.asarray(run.data.tokenizer.encode(sample.get("prompt", "The")))[None]
    out = generate(  # the model's cached decoder where it has one
        model, prompt, int(sample.get("num_tokens", 200)),
        jax.random.key(int(sample.get("seed", 0))),
        temperature=float(sample.get("temperature", 0.8)), top_k=int(sample.get("top_k", 40)),
        pad_id=int(run.data.tokenizer.pad_id),
    )  # fmt: skip
    return run.data.tokenizer.decode(np.asarray(out[0]))
