"""The paper's claims at small scale: seeds, two budgets, two tokenizers, two domains, context use.

One study is a list of training runs (`RunKey`s), each a `compare.run_variant` in its own
workdir under the workroot with its row cached there, so the study runs in resumable chunks (a
variant per invocation with `--variants`; `--rerun` redoes them) and every invocation rewrites the
report from the runs that exist (`study_report`). A finished run's row (its figures and its
validation curve) also lives in the committed study.json, the ledger: a run found there is not
trained again, so a study started in one checkout continues in another. A run is a variant
(clean or with the authors' code knobs) at one seed under one budget:

  * 'tokens': every model sees the same input tokens (the paper's framing);
  * 'targets_short': the models that score every position train l / n times as long, so they
    get as many loss targets as the latent models get at the 'tokens' budget (equal targets);
  * 'targets': the latent models train n / l times longer, so they get as many loss targets as
    the models that score every position (equal targets the other way round);
  * 'long': `long_factor` times the 'tokens' budget, one seed: how far the short budget is
    from a plateau, and whether the ordering survives a longer run;

with byte tokens, or SentencePiece (`subword`), always reported in bits per byte. Each run is
measured on the Austen validation split and on a held-out domain (the World English Bible's
Gospels), by position in the window (`context_use.position_losses`), and LLP and the
transformer by carried context (`context_use.context_curve`); extra LLP depths test whether the
receptive field L * k * s shows up in the loss. `recipe` runs are the paper's recipe, scaled
down: code-faithful LLP vs the transformer, AdamW 2e-4 halved on a schedule, SentencePiece.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable

import numpy as np

from llp_jax import strict_json
from llp_jax.data import bible
from llp_jax.data.datasets import corpus_datasets
from llp_jax.evaluation import runner
from llp_jax.storage import read_jsonl
from llp_jax.studies import compare, compare_spec, context_use, workdirs
from llp_jax.studies.study_spec import RunKey, StudySpec


def measure(study: StudySpec, key: RunKey) -> Callable:
    """The study's measurements of a trained run (`compare.run_variant`'s `extra`)."""

    def extra(run, params, cfg) -> dict:
        from flax import nnx

        from llp_jax import models

        model = nnx.merge(nnx.split(models.abstract_model(cfg))[0], params)
        n, out = cfg.seq_len, {"study": study.measure_settings()}
        val = run.data.eval_tokens("validation")
        per_position = context_use.position_losses(model, val, window=n,
                                                   max_windows=study.position_windows)  # fmt: skip
        out["position_loss"] = context_use.bucket_means(per_position, study.bucket)
        out["bytes_per_token"] = _bytes_per_token(run.data, "validation")
        if cfg.name in ("llp", "transformer"):
            s = cfg.segment_len if cfg.name == "llp" else n // study.base.segments
            reach = cfg.num_layers * cfg.prev_segments if cfg.name == "llp" else n // s - 1
            top = max(reach + 2, n // s - 1) if cfg.name == "llp" else reach
            out["context"] = context_use.context_curve(
                model, val, segment=s, contexts=range(top + 1), max_context=top,
                num_targets=study.context_targets, stream=cfg.name == "llp",
            )  # fmt: skip
            out["context_segment"] = s
        web = corpus_datasets(bible.load_web_bible(), run.data.tokenizer, n, splits=("validation",))
        setup = runner.Setup(model, cfg, web, "study")
        (result,) = runner.evaluate(setup, split="validation", protocols=["standard"],
                                    max_tokens=study.domain_tokens)  # fmt: skip
        out["web_bits_per_byte"] = result.bits_per_byte
        out["curve"] = read_curve(run.workdir)
        return out

    return extra


def read_curve(workdir: str) -> list[tuple[int, float, float]]:
    """(step, training seconds so far, validation bits per token) of a run's in-training
    evaluations; training seconds = logged step times (compilation and evaluation excluded)."""
    points, seconds, last = [], 0.0, 0
    for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")):
        if "train/step_time_s" in r:
            seconds += r["train/step_time_s"] * (r["step"] - last)
            last = r["step"]
        if "val/loss" in r:
            points.append((r["step"], seconds, r["val/loss"] / math.log(2)))
    return points


def _bytes_per_token(data, split: str) -> float:
    return data.num_bytes[split] / max(len(data.eval_tokens(split)), 1)


def finished(study: StudySpec, key: RunKey, workdir: str, ledger=()) -> dict | None:
    """The run's row if it finished under the same spec and measurements: from its workdir, or
    else from the `ledger` (rows of an earlier study.json, each with its key)."""
    row = workdirs.finished_row(study.run_spec(key), workdir)
    if row is None:
        settings = workdirs.run_settings(study.run_spec(key))
        found = [r for r in ledger if r.get("key") == dataclasses.asdict(key)
                 and workdirs.run_settings(r.get("spec")) == settings and "curve" in r]  # fmt: skip
        row = dict(found[-1]) if found else None
    if row is None or row.get("study") != json.loads(json.dumps(study.measure_settings())):
        return None
    return row


def read_ledger(path: str) -> list[dict]:
    """The rows of a study.json (none if there is no such file)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return strict_json.loads(f.read()).get("rows", [])


def run_study(
    study: StudySpec,
    workroot: str,
    *,
    only: tuple[str, ...] | None = None,
    kinds: tuple[str, ...] | None = None,
    rerun: bool = False,
    ledger=(),
    devices=None,
    log: Callable[[str], None] = print,
    on_run: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Trains the study's missing runs (those of `only`'s variants and of `kinds`, or all) and
    returns every finished run's row, each with its key. A run whose row is in the `ledger`
    (`read_ledger`) is finished, unless `rerun` chooses it. `on_run(rows)` is called after each
    run trained here with every row so far and the ledger's others (so that a report written
    there loses nothing when a long invocation is stopped)."""
    workroot = os.path.abspath(workroot)
    workdirs.ensure_ignored(workroot)
    keys = study.runs()
    done, todo = {}, []  # key index -> row; keys to train
    for i, key in enumerate(keys):
        workdir = os.path.join(workroot, key.dirname)
        chosen = (only is None or key.label in only) and (kinds is None or key.kind in kinds)
        row = None if rerun and chosen else finished(study, key, workdir, ledger)
        if row is not None:
            done[i] = {**row, "key": dataclasses.asdict(key), "workdir": workdir}
        elif chosen:
            todo.append(i)
    for i in todo:
        key, workdir = keys[i], os.path.join(workroot, keys[i].dirname)
        if rerun and os.path.isdir(workdir):
            shutil.rmtree(workdir)
        workdirs.clear_stale(study.run_spec(key), workdir)  # an unfinished run of it resumes
        log(f"--- {key}")
        row = compare.run_variant(study.run_spec(key), compare_spec.VARIANTS_BY_LABEL[key.label],
                                  workdir, devices=devices, log=log, extra=measure(study, key),
                                  protocols=("standard",))  # fmt: skip
        done[i] = {**row, "key": dataclasses.asdict(key), "workdir": workdir}
        if on_run is not None:
            on_run([done[j] for j in sorted(done)])
    return [done[j] for j in sorted(done)]


def bits(row: dict, field: str = "validation") -> float:
    """Bits per byte of a row's split (Austen validation by default; 'web' for the Bible)."""
    if field == "web":
        return row["web_bits_per_byte"]
    for name in (f"{field}_standard_bits_per_byte", f"{field}_bits_per_byte"):
        if row.get(name) is not None:
            return row[name]
    return row[f"{field}_standard_loss"] / math.log(2)  # byte tokens: bits per byte


def mean_std(values) -> tuple[float, float, int]:
    values = np.asarray([v for v in values if v is not None], float)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()), std, len(values)
