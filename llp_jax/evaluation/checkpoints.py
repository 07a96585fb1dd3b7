"""Loading a trained model from a workdir, read-only, onto one device.

Evaluation never reaches back into the trainer: it reads `<workdir>/checkpoints/<step>/` directly
with Orbax (the model config from the 'meta' item, then only the 'params' of the 'state' item,
each array restored onto the default device whatever mesh it was saved from), and never writes or
cleans anything there, so it is safe to run beside a training job.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from llp_jax import models
from llp_jax.evaluation.errors import EvaluationError

# Knobs that change how a model is executed, not what it computes: a --config may differ there.
EXECUTION_FIELDS = ("attention_impl", "compute_dtype", "remat", "dropout")


class CheckpointError(EvaluationError):
    """A workdir cannot be evaluated; the message is one line saying why."""


class NoCheckpointError(CheckpointError):
    """The workdir holds no checkpoint."""


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


class _QuietMissingMetadata(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Metadata file does not exist" not in record.getMessage()


def checkpoint_steps(workdir: str) -> list[int]:
    """Committed checkpoint steps in `<workdir>/checkpoints`, oldest first (no side effects)."""
    root = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(root):
        return []
    return sorted(
        int(d)
        for d in os.listdir(root)
        if d.isdigit()
        and os.path.isdir(os.path.join(root, d, "state"))
        and os.path.isdir(os.path.join(root, d, "meta"))
    )


def read_meta(workdir: str, step: int) -> dict:
    path = os.path.abspath(os.path.join(workdir, "checkpoints", str(step), "meta"))
    handler = ocp.Checkpointer(ocp.JsonCheckpointHandler())
    return dict(handler.restore(path, args=ocp.args.JsonRestore()))


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
    diffs = [
        f"{f.name}={getattr(saved, f.name)!r} (checkpoint) vs {getattr(want, f.name)!r} (config)"
        for f in dataclasses.fields(models.ModelConfig)
        if f.name not in EXECUTION_FIELDS and getattr(saved, f.name) != getattr(want, f.name)
    ]
    if diffs:
        raise ConfigMismatchError(
            f"the checkpoint in {where} was trained with a different model config: "
            + "; ".join(diffs)
        )
    return saved.replace(**{k: getattr(want, k) for k in EXECUTION_FIELDS})


def _strip_value_nodes(tree):
    """Saved nnx.State nodes look like {'value': array}; the model wants the arrays themselves."""
    if isinstance(tree, dict):
        if set(tree) == {"value"}:
            return tree["value"]
        return {k: _strip_value_nodes(v) for k, v in tree.items()}
    return tree


def restore_params(workdir: str, step: int, model: nnx.Module) -> nnx.Module:
    """Restores the 'params' of a step's train state into `model` (on the default device)."""
    path = os.path.abspath(os.path.join(workdir, "checkpoints", str(step), "state"))
    checkpointer = ocp.PyTreeCheckpointer()
    quiet = _QuietMissingMetadata()
    logging.getLogger("absl").addFilter(quiet)
    try:
        tree = checkpointer.metadata(path).item_metadata
        if "params" not in tree:
            raise CheckpointError(f"checkpoint {path} has no 'params' in its state")
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        saved = tree["params"]
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved
        )
        restore_args = jax.tree.map(lambda m: ocp.ArrayRestoreArgs(sharding=device), saved)
        out = checkpointer.restore(
            path,
            args=ocp.args.PyTreeRestore(
                item={"params": target},
                restore_args={"params": restore_args},
                partial_restore=True,
            ),
        )
    finally:
        logging.getLogger("absl").removeFilter(quiet)
    graphdef, state = nnx.split(model)
    try:
        nnx.replace_by_pure_dict(state, _strip_value_nodes(out["params"]))
    except (KeyError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model config in its meta: {str(e).splitlines()[0]}"
        ) from None
    return nnx.merge(graphdef, state)


def _data_config(workdir: str, meta: dict) -> dict | None:
    if isinstance(meta.get("data"), dict):
        return meta["data"]
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f).get("data")
        return data if isinstance(data, dict) else None
    return None


def load_model(workdir: str, *, model_config: Any = None, step: int | None = None) -> LoadedModel:
    """Restores the newest (or a given) checkpoint of a training workdir.

    Args:
      workdir: a training run's workdir (holding `checkpoints/`).
      model_config: optional expected model config (e.g. `config.model` of --config); it must
        describe the same architecture, only its execution knobs (EXECUTION_FIELDS) are taken.
      step: a given step (default: the newest).

    Raises:
      NoCheckpointError, ConfigMismatchError, CheckpointError: one-line messages.
    """
    steps = checkpoint_steps(workdir)
    where = os.path.join(workdir, "checkpoints")
    if not steps:
        raise NoCheckpointError(f"no checkpoint in {where}: train first, or check --workdir")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise NoCheckpointError(f"no checkpoint for step {step} in {where} (steps: {steps})")
    meta = read_meta(workdir, step)
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"checkpoint step {step} in {where} has no model config in its meta")
    try:
        saved = models.ModelConfig.from_any(meta["model"])
    except models.ConfigError as e:
        raise CheckpointError(f"checkpoint step {step} in {where}: {e}") from None
    cfg = saved if model_config is None else check_same_model(saved, model_config, where)
    model = restore_params(workdir, step, models.abstract_model(cfg))
    return LoadedModel(model, cfg, step, workdir, _data_config(workdir, meta))
