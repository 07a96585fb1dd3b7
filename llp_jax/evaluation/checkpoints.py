"""Loading a trained model from a workdir, read-only, onto one device.

Evaluation never reaches back into the trainer: it reads `<workdir>/checkpoints/<step>/` through
the read-only side of `llp_jax.storage.checkpoints` (the model config from the 'meta' item, then
only the params, restored onto the default device whatever mesh they were saved from), and never
writes or cleans anything there, so it is safe to run beside a training job.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
from typing import Any

from flax import nnx

from llp_jax import models, paths
from llp_jax.data import build_datasets, make_tokenizer, txl_bytes, workdir_store
from llp_jax.data.tokenizer_specs import FROM_CORPUS
from llp_jax.data.tokenizers import ByteTokenizer, Tokenizer
from llp_jax.evaluation.errors import EvaluationError
from llp_jax.storage import (
    CheckpointNotFoundError,
    committed_steps,
    describe_cause,
    load_params,
    newest_readable,
    no_checkpoint,
    read_meta,
    replaced_while_read,
    step_dirs,
)

# Knobs that change how a model is executed, not what it computes: a --config may differ there.
# The model's execution fields, and dropout (off at inference).
EXECUTION_FIELDS = (*models.config.EXECUTION_FIELDS, "dropout")


class CheckpointError(EvaluationError):
    """A workdir cannot be evaluated; the message is one line saying why."""


class ConfigMismatchError(CheckpointError):
    """The checkpoint was written by a different model config than the one given."""


@dataclasses.dataclass
class LoadedModel:
    """A restored model. `data_config` is the training run's config.data when the workdir says."""

    model: models.LanguageModel
    config: models.ModelConfig
    step: int
    workdir: str
    data_config: dict | None = None
    source: dict | None = None  # where imported weights came from (an authors' checkpoint)

    @functools.cached_property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer the model was trained with (the workdir's data record): `.encode(text)`
        gives the ids `evaluate_perplexity` and `generate` take, `.decode(ids)` the text."""
        record = workdir_store.read_record(self.workdir)
        if record is not None:
            return workdir_store.tokenizer(self.workdir, record)
        # No data record (an imported checkpoint, or a run of llp_jax < 0.2): its data section.
        spec = (self.data_config or {}).get("tokenizer", "byte")
        if spec == "byte":
            return ByteTokenizer()
        if spec == txl_bytes.KIND:  # counted again from the data the section names: the same ids
            data = build_datasets(self.data_config, self.config.seq_len, process_index=0,
                                  process_count=1)  # fmt: skip
            return data.tokenizer
        if spec not in FROM_CORPUS:  # a file: the same ids wherever it is read
            return make_tokenizer(spec)
        raise EvaluationError(
            f"{self.workdir} keeps no tokenizer (no {workdir_store.FOLDER}/record.json: written "
            "before llp_jax 0.2); tokenize with the one its run was trained with"
        )


def check_same_model(saved: models.ModelConfig, given: Any, where: str) -> models.ModelConfig:
    """The saved config with the given one's execution knobs, if their architectures agree.

    Args:
      saved: the checkpoint's model config.
      given: a ModelConfig, mapping or ConfigDict (`config.model`); vocab_size 0 = the saved one.
      where: the checkpoint directory, for the message.

    Raises:
      ConfigMismatchError: one line listing every differing field.
    """
    fields = dict(
        given.to_dict()
        if hasattr(given, "to_dict")
        else dataclasses.asdict(given)
        if isinstance(given, models.ModelConfig)
        else given
    )
    if not fields.get("vocab_size"):
        fields["vocab_size"] = saved.vocab_size
    want = models.ModelConfig.from_any(fields)
    diffs = models.config.differences(saved, want, ignore=EXECUTION_FIELDS)
    if diffs:
        raise ConfigMismatchError(
            f"the checkpoint in {where} was trained with a different model config: "
            + "; ".join(diffs)
        )
    return saved.replace(**{k: getattr(want, k) for k in EXECUTION_FIELDS})


def _with_params(model: nnx.Module, params: dict, step: int, where: str) -> nnx.Module:
    """`model` with the params of a step (on the default device)."""
    graphdef, state = nnx.split(model)
    try:
        nnx.replace_by_pure_dict(state, params)
    except (KeyError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint step {step} in {where} does not fit the model config in its meta: "
            f"{str(e).splitlines()[0]}"
        ) from None
    return nnx.merge(graphdef, state)


def load_model(workdir: str, *, model_config: Any = None, step: int | None = None) -> LoadedModel:
    """Restores the newest (or a given) checkpoint of a training workdir.

    Args:
      workdir: a training run's workdir (holding `checkpoints/`).
      model_config: optional expected model config (e.g. `config.model` of --config); it must
        describe the same architecture, only its execution knobs (EXECUTION_FIELDS) are taken.
      step: a given step (default: the newest).

    Raises:
      CheckpointNotFoundError, ConfigMismatchError, CheckpointError: one-line messages.
    """
    if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)):
        raise EvaluationError(
            f"step={step!r} must be an int, a checkpoint's step (None: the newest)"
        )
    if not isinstance(workdir, (str, os.PathLike)) or not os.fspath(workdir):
        raise EvaluationError(
            f"workdir={workdir!r} must be a training run's folder (a path or a gs:// URL)"
        )
    paths.check_client(workdir)
    where = paths.join(workdir, "checkpoints")
    steps = committed_steps(where)
    if not step_dirs(where):
        raise CheckpointNotFoundError(no_checkpoint(where, "train first, or check --workdir"))

    def read(at: int):
        meta = read_meta(where, at)
        if not isinstance(meta.get("model"), dict):
            raise CheckpointError(
                f"checkpoint step {at} in {where} has no model config in its meta"
            )
        try:
            saved = models.ModelConfig.from_any(meta["model"])
        except models.ConfigError as e:
            raise CheckpointError(f"checkpoint step {at} in {where}: {e}") from None
        return meta, saved, load_params(where, at)

    if step is None:  # the newest intact step; damaged or vanishing ones are skipped
        step, (meta, saved, params) = newest_readable(where, read)
    elif step not in steps:
        raise CheckpointNotFoundError(f"no checkpoint for step {step} in {where} (steps: {steps})")
    else:
        try:
            meta, saved, params = read(step)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001  a damaged step, asked for by number
            if replaced_while_read(where, step, steps):
                raise CheckpointNotFoundError(
                    f"checkpoint step {step} in {where} was deleted while it was read: the run "
                    "training there keeps only its newest steps (train.keep_checkpoints); drop "
                    "--step to read the newest, or name a step it keeps"
                ) from None
            raise CheckpointError(
                f"checkpoint step {step} in {where} is damaged ({describe_cause(e)}); "
                "drop --step to use the newest intact one"
            ) from None
    cfg = saved if model_config is None else check_same_model(saved, model_config, where)
    model = _with_params(models.abstract_model(cfg), params, step, where)
    data = meta.get("data") if isinstance(meta.get("data"), dict) else None
    source = meta.get("source") if isinstance(meta.get("source"), dict) else None
    return LoadedModel(model, cfg, step, workdir, data, source)
