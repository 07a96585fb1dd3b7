"""Typed config sections: dataclasses with their defaults in one place, read from the
`ml_collections.ConfigDict` sections that config files and `--config.x.y=` flags edit.

Each section (`DataConfig`, `TrainConfig`, `MeshConfig`, `SampleConfig`, and `ModelConfig`)
is a frozen dataclass whose `validate()` checks every field. `from_any(cls, config, section)`
turns a ConfigDict, a mapping or an instance into the dataclass, with a one-line ConfigError for
an unknown field or a value of the wrong type, so a typo never falls back to a default silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import typing
from typing import Any, TypeVar

import ml_collections

from llp_jax import strict_json
from llp_jax.errors import ConfigError

T = TypeVar("T")
_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}
_ARTICLE = {"int": "an", "float": "a", "str": "a", "bool": "a"}


def _accepts(kind: str, value: Any) -> bool:
    if kind == "float":  # numbers.Real/Integral: numpy scalars too
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return isinstance(value, _SCALARS[kind])


def float_value(value: Any) -> Any:
    """A float field's value as a Python float where it is a number, or one of the strings
    "nan", "inf", "-inf" (how checkpoints written before kept them); anything else unchanged,
    for `check_types` to name."""
    if _accepts("float", value) or (isinstance(value, str) and value in strict_json.NON_FINITE):
        return float(value)
    return value


def from_any(cls: type[T], config: Any, section: str) -> T:
    """A validated `cls` from an instance, a mapping or a ConfigDict (None = the defaults).

    Raises:
      ConfigError: `section` is not a mapping, has an unknown field, or a field of the wrong type.
    """
    if isinstance(config, cls):
        return config.validate()
    if config is None:
        return cls().validate()
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, typing.Mapping):
        raise ConfigError(f"config.{section} must be a section of fields, not {config!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_known(config, fields, f"config.{section}")
    values = {}
    for name, value in config.items():
        if field_kind(fields[name]) == "float":
            value = float_value(value)
        values[name] = value
    instance = cls(**values)
    check_types(instance, section)
    return instance.validate()


def check_known(given, fields, section: str) -> None:
    """One line for names in `given` that are not among `fields` (a typo gets a suggestion)."""
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ConfigError(f"{section} has no field(s) {unknown}{hint(unknown[0], fields)}")


# What other codebases (nanoGPT, Hugging Face Trainer and configs, MaxText, PyTorch scripts)
# call a field, to the field here. Spelling alone misled: max_steps -> max_bad_steps, lr ->
# min_lr_ratio, save_every -> halve_every, block_size -> vocab_size, adam_eps -> grad_accum_steps.
_SYNONYMS = {
    "learning_rate": "lr max_lr peak_lr base_lr",
    "num_steps": "steps max_steps total_steps train_steps num_train_steps max_iters iters "
    "iterations training_steps",
    "checkpoint_every": "save_every save_steps save_interval save_freq checkpoint_interval "
    "checkpoint_steps ckpt_every checkpoint_period",
    "keep_checkpoints": "max_to_keep save_total_limit keep keep_last",
    "log_every": "log_interval logging_steps log_steps log_freq log_period",
    "eval_every": "eval_interval eval_steps eval_freq evaluation_steps eval_period",
    "eval_batches": "eval_iters num_eval_batches eval_num_batches",
    "clip_norm": "grad_clip max_grad_norm gradient_clipping clip_grad_norm grad_norm_clip "
    "gradient_clip_val",
    "weight_decay": "wd decay",
    "batch_size": "bs per_device_train_batch_size global_batch_size train_batch_size",
    "b1": "beta1 adam_beta1 adam_b1",
    "b2": "beta2 adam_beta2 adam_b2",
    "eps": "epsilon adam_eps adam_epsilon",
    "grad_accum_steps": "gradient_accumulation_steps accum_steps accumulation_steps",
    "warmup_steps": "warmup warmup_iters lr_warmup_steps num_warmup_steps",
    "init_from": "resume_from pretrained init_checkpoint load_checkpoint from_pretrained",
    "seq_len": "block_size context_length max_seq_len seq_length n_ctx max_position_embeddings "
    "context_len sequence_length max_len",
    "d_model": "hidden_size n_embd d_embed emb_dim embed_dim dim width hidden_dim model_dim",
    "num_layers": "n_layer n_layers num_hidden_layers depth layers",
    "num_heads": "n_head n_heads num_attention_heads heads",
    "mlp_ratio": "d_ff ffn_dim intermediate_size mlp_dim ff_mult ffn_mult",
    "dropout": "dropout_rate attn_pdrop resid_pdrop hidden_dropout_prob pdrop",
    "compute_dtype": "dtype precision",
    "remat": "gradient_checkpointing activation_checkpointing",
    "name": "model model_type arch architecture",
    "corpus": "dataset data data_path train_data train_file dataset_name input text",
    "tokenizer": "tokenizer_path tokenizer_name spm_model vocab_file",
    "text_field": "text_column column field",
    "num_tokens": "max_new_tokens max_tokens",
    "temperature": "temp",
}
NOTES = {"mlp_ratio": " (the feed-forward width over d_model)"}
SYNONYMS = {alias: field for field, aliases in _SYNONYMS.items() for alias in aliases.split()}


def synonym(name: str) -> str | None:
    """The field here that another codebase calls `name` (`SYNONYMS`), if any."""
    return SYNONYMS.get(name.lower().replace("-", "_"))


def hint(name: str, fields) -> str:
    """'; did you mean ...?' for a field name that is not among `fields`, else the known ones.

    Another codebase's name for a field (`SYNONYMS`: max_steps, block_size) comes first, then a
    field whose words hold the name (steps -> num_steps, heads -> num_heads) before one merely
    spelt like it (difflib would offer eps for steps)."""
    alias = synonym(name)
    if alias in fields:
        return f"; did you mean {alias!r}{NOTES.get(alias, '')}?"
    holds = [f for f in fields if name in f.split("_")]
    close = difflib.get_close_matches(name, holds or list(fields), n=1,
                                      cutoff=0.0 if holds else 0.6)  # fmt: skip
    return f"; did you mean {close[0]!r}?" if close else f"; known fields: {sorted(fields)}"


def field_kind(field: dataclasses.Field) -> str:
    kind = field.type
    return kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))


def check_types(instance: Any, section: str) -> None:
    """One line for a scalar field holding a value of the wrong type (a float layer count, a
    string width), before any check compares it."""
    for field in dataclasses.fields(instance):
        kind, value = field_kind(field), getattr(instance, field.name)
        if kind in _SCALARS and not _accepts(kind, value):
            raise ConfigError(f"{section}.{field.name}={value!r} must be {_ARTICLE[kind]} {kind}")


def to_configdict(instance: Any) -> ml_collections.ConfigDict:
    """The ConfigDict form of a section (what config files start from and flags override)."""
    return ml_collections.ConfigDict(dataclasses.asdict(instance))


class Checker:
    """One-line checks for one section: `check(ok, 'field', 'must be ...')` raises
    `ConfigError('<section>.<field>=<value> must be ...')`."""

    def __init__(self, section: str, instance: Any):
        self.section, self.instance = section, instance

    def __call__(self, ok: bool, field: str, constraint: str) -> None:
        if not ok:
            value = getattr(self.instance, field)
            raise ConfigError(f"{self.section}.{field}={value!r} {constraint}")

    def at_least(self, field: str, low: float) -> None:
        value = getattr(self.instance, field)
        self(math.isfinite(value) and value >= low, field, f"must be >= {low}")

    def seed(self, field: str) -> None:
        value = getattr(self.instance, field)
        self(0 <= value < 2**64, field, "must be in [0, 2**64) (a 64-bit seed)")

    def one_of(self, field: str, allowed) -> None:
        self(getattr(self.instance, field) in allowed, field, f"must be one of {tuple(allowed)}")
