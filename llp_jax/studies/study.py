"""The paper's claims at small scale: seeds, two budgets, two tokenizers, two domains, context use.

One study is a list of training runs (`RunKey`s), each a `compare.run_variant` in its own
workdir under the workroot with its row cached there, so the study runs in resumable chunks (a
variant per invocation with `--variants`; `--rerun` redoes them) and every invocation rewrites the
report from the runs that exist (`study_report`). A run is a variant (clean or with the authors'
code knobs) at one seed under one budget:

  * 'tokens': every model sees the same input tokens (the paper's framing);
  * 'targets': the latent models train n / l times longer, so they get as many loss targets as
    the models that score every position (an equal-wall-clock view is read off the curves);

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

from llp_jax.data import bible
from llp_jax.data.datasets import corpus_datasets
from llp_jax.evaluation import runner
from llp_jax.studies import compare, context_use
from llp_jax.studies.compare import CompareSpec

KINDS = ("tokens", "targets", "subword", "depth", "recipe")


@dataclasses.dataclass(frozen=True)
class RunKey:
    label: str  # a compare variant label
    seed: int
    budget: str = "tokens"  # 'tokens' | 'targets' | 'recipe'
    tokenizer: str = "byte"  # 'byte' | 'sentencepiece'
    num_layers: int | None = None  # None: the study's depth

    @property
    def kind(self) -> str:
        """'tokens', 'targets', 'subword', 'depth' or 'recipe' (`run_study`'s `kinds`)."""
        if self.budget != "tokens":
            return self.budget
        return "subword" if self.tokenizer != "byte" else "depth" if self.num_layers else "tokens"

    @property
    def dirname(self) -> str:
        depth = f"_L{self.num_layers}" if self.num_layers else ""
        name = compare.workdir_name(compare.VARIANTS_BY_LABEL[self.label])
        return f"{self.budget}_{self.tokenizer}/{name}{depth}_seed{self.seed}"


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What one study trains and measures (see `STUDIES`)."""

    name: str
    base: CompareSpec
    variants: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    equal_targets: tuple[str, ...] = ()  # latent variants also trained to equal targets
    subword: tuple[str, ...] = ()  # variants also trained with SentencePiece
    depths: tuple[int, ...] = ()  # extra LLP depths (context use)
    recipe: CompareSpec | None = None  # the paper's recipe, scaled down
    recipe_variants: tuple[str, ...] = ("llp (code)", "transformer")
    bucket: int = 32  # loss-by-position bucket width
    position_windows: int = 128
    context_targets: int = 256  # target segments of the context curves
    domain_tokens: int = 65_536  # held-out domain tokens evaluated

    def runs(self) -> list[RunKey]:
        keys = [RunKey(v, s) for v in self.variants for s in self.seeds]
        keys += [RunKey(v, s, "targets") for v in self.equal_targets for s in self.seeds]
        keys += [RunKey(v, s, tokenizer="sentencepiece") for v in self.subword for s in self.seeds]
        keys += [RunKey("llp", s, num_layers=L) for L in self.depths for s in self.seeds]
        if self.recipe is not None:
            keys += [RunKey(v, 0, "recipe", "sentencepiece") for v in self.recipe_variants]
        return keys

    def run_spec(self, key: RunKey) -> CompareSpec:
        """The compare spec of one run: its seed, tokenizer, depth and number of steps."""
        spec = self.recipe if key.budget == "recipe" else self.base
        spec = dataclasses.replace(spec, seed=key.seed, tokenizer=key.tokenizer)
        if key.num_layers:
            spec = dataclasses.replace(spec, num_layers=key.num_layers)
        if key.budget == "targets":
            cfg = compare.model_config(spec, compare.VARIANTS_BY_LABEL[key.label])
            factor = spec.seq_len // cfg.scored_len  # n / l for latent models, 1 otherwise
            spec = dataclasses.replace(spec, num_steps=spec.num_steps * factor,
                                       eval_every=spec.eval_every * factor)  # fmt: skip
        return spec

    def measure_settings(self) -> dict:
        return {f: getattr(self, f) for f in ("bucket", "position_windows", "context_targets",
                                              "domain_tokens")}  # fmt: skip


# The committed study: n = 256, d = 128, L = 4, H = 4 (LLP s = 64, k = 1: receptive field
# L * k * s = 256 = n), 300 steps of 8 x 256 byte tokens, 3 seeds. Sized with `compare
# --estimate` to fit this 2-core CPU in about 75 minutes (step times 0.05 s perceiver_ar to
# 0.35 s enhanced_v2 (code)).
SMALL = StudySpec(
    name="small",
    base=CompareSpec(
        seq_len=256,
        d_model=128,
        num_layers=4,
        num_heads=4,
        segments=4,
        latent_div=4,
        history_segments=3,
        batch_size=8,
        num_steps=300,
        learning_rate=2e-3,
        warmup_steps=30,
        eval_every=50,
        eval_batches=4,
        eval_tokens=65_536,
    ),  # fmt: skip
    variants=tuple(v.label for v in compare.VARIANTS if "(" not in v.label)
    + tuple(v.label for v in compare.CODE_VARIANTS),
    equal_targets=("perceiver_ar", "enhanced_v3"),
    subword=("llp", "transformer"),
    depths=(2,),
    recipe=CompareSpec(
        seq_len=512,
        d_model=128,
        num_layers=4,
        num_heads=4,
        segments=8,
        latent_div=4,
        batch_size=8,
        num_steps=500,
        learning_rate=2e-4,
        warmup_steps=0,
        schedule="step_halving",
        halve_every=200,
        eval_every=100,
        eval_batches=4,
        eval_tokens=65_536,
        vocab_size=2048,
    ),  # fmt: skip
)
# Seconds, for tests and `--study=quick`.
QUICK = StudySpec(
    name="quick",
    base=dataclasses.replace(compare.QUICK, num_steps=4, eval_tokens=2048),
    variants=("transformer", "llp", "perceiver_ar"),
    seeds=(0, 1),
    equal_targets=("perceiver_ar",),
    subword=("llp",),
    depths=(1,),
    bucket=16,
    position_windows=4,
    context_targets=8,
    domain_tokens=2048,
)
STUDIES = {s.name: s for s in (SMALL, QUICK)}


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
        return out

    return extra


def _bytes_per_token(data, split: str) -> float:
    return data.num_bytes[split] / max(len(data.eval_tokens(split)), 1)


def finished(study: StudySpec, key: RunKey, workdir: str) -> dict | None:
    row = compare.finished_row(study.run_spec(key), workdir)
    if row is None or row.get("study") != json.loads(json.dumps(study.measure_settings())):
        return None
    return row


def run_study(
    study: StudySpec,
    workroot: str,
    *,
    only: tuple[str, ...] | None = None,
    kinds: tuple[str, ...] | None = None,
    rerun: bool = False,
    devices=None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Trains the study's missing runs (those of `only`'s variants and of `kinds`, or all) and
    returns every finished run's row, each with its key."""
    workroot = os.path.abspath(workroot)
    compare.ensure_ignored(workroot)
    rows = []
    for key in study.runs():
        workdir = os.path.join(workroot, key.dirname)
        chosen = (only is None or key.label in only) and (kinds is None or key.kind in kinds)
        row = None if rerun and chosen else finished(study, key, workdir)
        if row is None and chosen:
            if os.path.isdir(workdir):  # another spec, or unfinished: never mix
                shutil.rmtree(workdir)
            log(f"--- {key}")
            spec = study.run_spec(key)
            row = compare.run_variant(spec, compare.VARIANTS_BY_LABEL[key.label], workdir,
                                      devices=devices, log=log, extra=measure(study, key),
                                      protocols=("standard",))  # fmt: skip
        if row is not None:
            rows.append({**row, "key": dataclasses.asdict(key), "workdir": workdir})
    return rows


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
