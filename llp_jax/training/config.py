"""`config.train` and `config.mesh`: the typed sections the trainer reads."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import ml_collections
import numpy as np

from llp_jax import schema
from llp_jax.data.config import DataConfig

SCHEDULES = ("cosine", "step_halving", "constant")
MESH_AXES = ("data", "fsdp", "sequence", "tensor")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training hyper-parameters every experiment starts from (override per config file).

    Compute dtype and rematerialisation are model fields (`config.model.compute_dtype`,
    `config.model.remat`): parameters and optimizer moments always stay float32.

    Attributes:
      batch_size: sequences per update (global, over all processes and devices).
      num_steps: updates to train for.
      learning_rate: peak learning rate.
      schedule: 'cosine' = linear warm-up to `learning_rate` over `warmup_steps`, then cosine
        decay to `min_lr_ratio * learning_rate` at `num_steps`; 'step_halving' = the authors'
        recipe, constant `learning_rate` halved every `halve_every` steps (0 = never), no
        warm-up; 'constant'.
      warmup_steps, halve_every, min_lr_ratio: see `schedule`.
      b1, b2, eps, weight_decay: AdamW (decoupled decay on weight matrices only).
      clip_norm: global-norm gradient clipping; <= 0 disables it.
      grad_accum_steps: micro-batches per update (batch_size must divide into them).
      eval_every, eval_batches: in-training validation cadence and size (batches of batch_size).
      checkpoint_every, keep_checkpoints: checkpoint cadence and the number of recent steps kept
        (plus the best one on validation loss).
      log_every: train metrics cadence.
      max_bad_steps: non-finite steps skipped (never applied) before the run stops.
      seed: parameter initialisation and dropout.
      init_from: 'WORKDIR[:STEP]': start from another run's weights and tokenizer (fresh
        optimizer, data and step counter; see training/finetune.py); '' = from scratch.
      trainable: 'all' | 'longlora' (embeddings, norms, attention; frozen feed-forward and
        head) | a regular expression that trainable parameter paths match.
      lora_rank, lora_alpha: r > 0 trains the trainable attention projections (wq, wk, wv, wo)
        as LoRA updates W0 + (alpha / r) A B, LongLoRA's way (r = 8, alpha = 16); 0 = in full
        (see training/lora.py).
    """

    batch_size: int = 32
    num_steps: int = 10_000
    learning_rate: float = 3e-4
    schedule: str = "cosine"
    warmup_steps: int = 500
    halve_every: int = 50_000
    min_lr_ratio: float = 0.1
    b1: float = 0.9
    b2: float = 0.95  # the authors' betas
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    grad_accum_steps: int = 1
    eval_every: int = 500
    eval_batches: int = 20
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    max_bad_steps: int = 0
    seed: int = 0
    init_from: str = ""
    trainable: str = "all"
    lora_rank: int = 0
    lora_alpha: float = 16.0

    @classmethod
    def from_any(cls, config: Any) -> TrainConfig:
        return schema.from_any(cls, config, "train")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> TrainConfig:
        check = schema.Checker("train", self)
        for field in ("batch_size", "num_steps", "grad_accum_steps", "eval_every", "eval_batches",
                      "checkpoint_every", "keep_checkpoints", "log_every"):  # fmt: skip
            check.at_least(field, 1)
        for field in ("warmup_steps", "halve_every", "max_bad_steps", "weight_decay"):
            check.at_least(field, 0)
        check.seed("seed")
        for field in ("num_steps", "warmup_steps", "halve_every"):  # they reach the jitted step
            check(getattr(self, field) < 2**31, field, "must be below 2**31 (steps count in int32)")
        check(self.learning_rate > 0 and self.learning_rate < float("inf"), "learning_rate",
              "must be a positive number")  # fmt: skip
        check.one_of("schedule", SCHEDULES)
        if self.trainable not in ("all", "longlora"):
            try:
                re.compile(self.trainable)
            except re.error as e:
                check(
                    False, "trainable", f"must be 'all', 'longlora' or a regular expression ({e})"
                )
        check.at_least("lora_rank", 0)
        check(0 < self.lora_alpha < float("inf"), "lora_alpha", "must be a positive number")
        check(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", "must be in [0, 1]")
        # The optimizer computes in float32: a setting valid as a float64 may not be as a float32
        # (every such run went non-finite, blamed on the learning rate).
        below_one = float(np.nextafter(np.float32(1), np.float32(0)))
        for field in ("b1", "b2"):
            value = getattr(self, field)
            check(0.0 <= value < 1.0, field, "must be in [0, 1)")
            check(np.float32(value) < 1, field, f"is 1.0 in float32, the optimizer's precision "
                  f"(Adam divides by 1 - {field}^t); at most {below_one:.8f}")  # fmt: skip
        tiny = float(np.finfo(np.float32).tiny)
        check(self.eps >= tiny, "eps", f"must be >= {tiny:.4g}, a normal float32 (below it the "
              "optimizer's eps is 0, and a weight with no gradient yet steps by 0/0 = NaN)")  # fmt: skip
        check(self.learning_rate >= tiny, "learning_rate", f"must be >= {tiny:.4g}, a normal "
              "float32 (below it every update is 0: a run that trains nothing)")  # fmt: skip
        check(self.clip_norm == self.clip_norm, "clip_norm", "must be a number (<= 0: no clip)")
        check(
            self.batch_size % self.grad_accum_steps == 0,
            "batch_size",
            f"must be a multiple of train.grad_accum_steps={self.grad_accum_steps}",
        )
        return self

    def notes(self) -> list[str]:
        """Valid settings that are likely not meant, each a line the trainer prints first: a
        warm-up longer than the run (the default 500 steps under a short num_steps)."""
        out = []
        if self.schedule == "cosine" and self.warmup_steps > self.num_steps:
            out.append(
                f"note: train.warmup_steps={self.warmup_steps} is more than num_steps="
                f"{self.num_steps}: the learning rate never reaches learning_rate="
                f"{self.learning_rate:g}, only {self.num_steps / self.warmup_steps:.0%} of it "
                f"(a shorter warm-up: --config.train.warmup_steps={max(self.num_steps // 10, 1)})"
            )
        return out


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh sizes; one of them may be -1 = the devices the others leave.

    Attributes:
      data: data parallelism.
      fsdp: data parallelism with parameters and optimizer moments sharded (ZeRO-3).
      sequence: LLP sequence (context) parallelism: each device holds a run of segments.
      tensor: Megatron-style tensor parallelism over heads, MLP and vocabulary.
    """

    data: int = -1
    fsdp: int = 1
    sequence: int = 1
    tensor: int = 1

    @classmethod
    def from_any(cls, config: Any) -> MeshConfig:
        return schema.from_any(cls, config, "mesh")

    def validate(self) -> MeshConfig:
        sizes = [getattr(self, axis) for axis in MESH_AXES]
        desc = ", ".join(f"{a}={s}" for a, s in zip(MESH_AXES, sizes))
        if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
            raise schema.ConfigError(
                f"mesh config ({desc}): at most one field may be -1, the others > 0"
            )
        return self


def default_train_config() -> ml_collections.ConfigDict:
    """The defaults of `config.train`, as the ConfigDict config files start from."""
    return schema.to_configdict(TrainConfig())


def default_mesh_config() -> ml_collections.ConfigDict:
    """Pure data parallelism over all devices (fine for the small models in this zoo)."""
    return schema.to_configdict(MeshConfig())


SECTIONS = ("model", "data", "train", "mesh")  # what the trainer needs
OPTIONAL_SECTIONS = ("sample",)  # the end-of-run sample (llp_jax.studies)


def read_sections(config: Any) -> tuple[dict, DataConfig, TrainConfig, MeshConfig]:
    """The trainer's sections of an experiment config, typed and validated: (the model fields as
    a dict, to be completed with the tokenizer's vocabulary; DataConfig; TrainConfig;
    MeshConfig). One-line ConfigError for a missing or unknown section."""
    if not hasattr(config, "keys"):
        raise schema.ConfigError(
            f"an experiment config is a ConfigDict with {', '.join(SECTIONS)} sections, not a "
            f"{type(config).__name__}; load a config file with llp_jax.configs.load("
            "'llp_jax/configs/tiny.py:llp') and set its .model to change the model"
        )
    keys = set(config.keys())
    missing = [s for s in SECTIONS if s not in keys]
    if missing:
        raise schema.ConfigError(
            f"the config has no {', '.join(missing)} section(s); an experiment config needs "
            f"{', '.join(SECTIONS)} (see llp_jax/configs/base.py)"
        )
    unknown = sorted(keys - set(SECTIONS) - set(OPTIONAL_SECTIONS))
    if unknown:
        raise schema.ConfigError(
            f"the config has unknown section(s) {unknown}; known: {SECTIONS + OPTIONAL_SECTIONS}"
        )
    model = config["model"]
    model = dict(model.to_dict() if hasattr(model, "to_dict") else model)
    data = DataConfig.from_any(config["data"])
    if model.get("document_mask") and data.one_stream:
        raise schema.ConfigError(
            f"model.document_mask=true keeps attention inside each document, but "
            f"data.corpus={data.corpus!r} is one text (its pieces are read as one stream, with no "
            "token between them: it would mask nothing); set --config.model.document_mask=false"
        )
    if model.get("document_mask") and data.document_boundaries == "none":
        raise schema.ConfigError(
            "model.document_mask=true keeps attention inside each document, but "
            "data.document_boundaries='none' puts no token between documents (it would mask "
            "nothing); set --config.data.document_boundaries=eod or "
            "--config.model.document_mask=false"
        )
    return model, data, TrainConfig.from_any(config["train"]), MeshConfig.from_any(config["mesh"])
