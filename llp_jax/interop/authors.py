"""The authors' PyTorch models (GitHub MetaMain/ECPTransformer) in and out of llp_jax.

Their five classes map onto five code-faithful llp_jax models:

  PerceiverARTransformer               perceiver_ar     (attention output `w_out`)
  DoubleAttentionTransformer           enhanced_v1      (`to_out`)
  sSplitAttentionTransformer           enhanced_v2      (`to_out`; same tensors as V1)
  CompressedDoubleAttentionTransformer enhanced_v3      (`w_out`, `projection_hist`)
  ECPAttentionTransformer              llp              (`to_out`, `to_out_0`)

A checkpoint is what their training script's `save_model` writes ({'epoch', 'state_dict' of the
AutoRegressiveWrapper, keys 'model.*', 'optimizer'}), a plain `state_dict()` of the model, or the
pickled model itself; also as other training scripts save them (under 'model_state_dict' or
'model', keys under DataParallel's 'module.' or torch.compile's '_orig_mod.'), or as a
`.safetensors` file (the Hugging Face Hub's). The
mapping is parameter by parameter (`authors_keys`): their Linear weights are [out, in] (heads
merged as h*d_h + i), ours [in, heads, d_h] / [heads, d_h, out]; everything else is the same
tensor. The config is read from the tensors where they say it (V, d, L, H from the K/V
LayerNorm's size, the FF ratio, RoPE's theta, V3's m and c, which class) and from their
checkpoint file name `trans_<net>_N<n>_H<h>_L<l>_D<d>_S<s>.pt`; what neither says (n, l, S)
comes from the caller, with a one-line error naming what is missing.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import numpy as np

from llp_jax import models, paths
from llp_jax.errors import LLPError
from llp_jax.interop import safetensors_format, torch_format, torch_pickle

NETS = {
    "PerceiverAR": "perceiver_ar",
    "DoubleAttention": "enhanced_v1",
    "sSplitAttention": "enhanced_v2",
    "CompressedDoubleAttention": "enhanced_v3",
    "ECPAttention": "llp",
}
CLASSES = {name: f"{net}Transformer" for net, name in NETS.items()}
_FILE_NAME = re.compile(r"trans_(?P<net>\w+?)_N(?P<n>\d+)_H(?P<h>\d+)_L(?P<l>\d+)_D(?P<d>\d+)"
                        r"_S(?P<s>\d+)\.pt$")  # fmt: skip


class InteropError(LLPError):
    """A checkpoint that cannot be converted; the message says which tensor or setting."""


@dataclasses.dataclass
class AuthorsCheckpoint:
    """An authors' checkpoint as read: the model's state dict (keys without 'model.'), and what
    `save_model` stored beside it."""

    state: dict[str, np.ndarray]
    epoch: int | None
    optimizer: dict | None
    path: str


# Where training scripts keep the model's tensors in a checkpoint dict, most likely first: their
# save_model's 'state_dict' (also PyTorch Lightning's), the PyTorch tutorial's
# 'model_state_dict', then names other scripts use; any other dict value after these.
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "params")
# Prefixes that wrappers add to every key: DataParallel / DistributedDataParallel ('module.'),
# torch.compile ('_orig_mod.'), their AutoRegressiveWrapper or a LightningModule ('model.').
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


def read_checkpoint(path: str | os.PathLike) -> AuthorsCheckpoint:
    """Reads a `save_model` file, a plain state dict, or a whole pickled model (no PyTorch
    needed), also as other training scripts save them (`_STATE_KEYS`, `_WRAPPER_PREFIXES`), or
    the model's tensors in a `.safetensors` file."""
    path = _checkpoint_in(os.fspath(path))
    if safetensors_format.is_safetensors(path):
        obj = safetensors_format.load(path)
    else:
        obj = torch_format.load(path)
    if not isinstance(obj, dict):
        raise InteropError(f"{path} holds a {type(obj).__name__}, not a state dict")
    named = [obj[k] for k in _STATE_KEYS if isinstance(obj.get(k), dict)]
    others = [v for k, v in obj.items() if k not in _STATE_KEYS and isinstance(v, dict)]
    for candidate in [obj, *named, *others]:
        state = _unwrapped(candidate)
        if "token_emb.weight" in state:
            break
    else:
        raise InteropError(f"{path}: no 'token_emb.weight'; not a model of the authors' code")
    for key, value in state.items():
        if not isinstance(value, np.ndarray):
            kind = torch_pickle.foreign_name(value) or type(value).__name__
            raise InteropError(f"{path}: {key} is a {kind}, not a tensor")
    optimizer = obj.get("optimizer", obj.get("optimizer_state_dict"))
    return AuthorsCheckpoint(
        state, _step(obj), optimizer if isinstance(optimizer, dict) else None, path
    )


_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_PREFERRED = ("model.safetensors", "pytorch_model.bin")  # a Hub snapshot's, PyTorchModelHubMixin's


def _checkpoint_in(path: str) -> str:
    """`path`, or for a folder (a Hub snapshot, their checkpoint/ folder) the one checkpoint in
    it: its model.safetensors or pytorch_model.bin, else its only .safetensors / .pt / .pth /
    .bin / .ckpt file; several are one line naming them."""
    folder = paths.resolve(path)
    if not folder.is_dir():
        return path
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(_SUFFIXES))
    chosen = [n for n in _PREFERRED if n in names][:1] or names
    if len(chosen) != 1:
        what = f"holds {len(names)} checkpoints ({', '.join(names[:6])})" if names else (
            f"holds no {', '.join(_SUFFIXES[:-1])} or {_SUFFIXES[-1]} file")  # fmt: skip
        raise InteropError(f"{path} is a folder that {what}; name the file to import")
    return paths.join(path, chosen[0])


def _step(obj: dict) -> int | None:
    """The step a checkpoint records: 'global_step' or 'step' (PyTorch Lightning, most scripts),
    else 'epoch' (their save_model's name for its loop counter)."""
    for key in ("global_step", "step", "epoch"):
        value = obj.get(key)
        if np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number):
            return int(value)
    return None


def _unwrapped(state: dict) -> dict[str, Any]:
    """The state dict's keys without the prefixes its wrappers added (`_WRAPPER_PREFIXES`)."""
    state = {str(k): v for k, v in state.items()}
    while state and (
        prefix := next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
    ):
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


# ----------------------------------------------------------------------------- the config
def infer_config(ckpt: AuthorsCheckpoint, **given: Any) -> models.ModelConfig:
    """The code-faithful ModelConfig of a checkpoint.

    Args:
      ckpt: from `read_checkpoint`.
      **given: `name`, `seq_len`, `latent_len`, `segments` (LLP: n / s; V2: S_h) and any other
        ModelConfig field, for what the tensors cannot say; None values are ignored.

    Raises:
      InteropError: a setting neither the tensors, the file name nor `given` provide, or one
        they contradict.
    """
    given = {k: v for k, v in given.items() if v is not None}
    state, where = ckpt.state, ckpt.path
    from_name = _FILE_NAME.search(os.path.basename(where))
    hint = from_name.groupdict() if from_name else {}
    V, d = state["token_emb.weight"].shape
    layers = sorted({int(k.split(".")[1]) for k in state if k.startswith("layers.")})
    if not layers or layers != list(range(len(layers))):
        raise InteropError(f"{where}: layers {layers} are not 0..L-1")
    prefix = "layers.0.0.fn."
    if f"{prefix}norm.weight" not in state:
        raise InteropError(f"{where}: no '{prefix}norm.weight' (the per-head K/V LayerNorm)")
    head_dim = state[f"{prefix}norm.weight"].shape[0]
    name = _model_name(state, given.pop("name", None) or NETS.get(hint.get("net", "")), where)
    seq_len = given.pop("seq_len", None) or (int(hint["n"]) if "n" in hint else None)
    fields = dict(
        name=name,
        vocab_size=V,
        d_model=d,
        num_layers=len(layers),
        num_heads=d // head_dim,
        mlp_ratio=state["layers.0.1.fn.net.0.weight"].shape[0] // d,
    )
    freqs = state.get(f"{prefix}pos_emb.freqs")
    if freqs is not None and len(freqs) > 1:  # freqs[i] = theta^(-2i / d_h)
        fields["rope_theta"] = float(round(float(freqs[1]) ** (-head_dim / 2)))
    segments = given.pop("segments", None) or (int(hint["s"]) if "s" in hint else None)
    if name == "enhanced_v3":
        c, m = state[f"{prefix}projection_hist.weight"].shape
        fields["compressed_len"] = c
        if seq_len is None and "latent_len" in given:
            seq_len = m + given["latent_len"]
        if seq_len is not None:
            fields["latent_len"] = seq_len - m
    fields["seq_len"] = _need(seq_len, "seq_len", "the window n", where)
    if name in ("perceiver_ar", "enhanced_v1", "enhanced_v2"):
        fields["latent_len"] = _need(given.pop("latent_len", None), "latent_len", "l", where)
    elif (
        name == "enhanced_v3"
        and given.get("latent_len", fields["latent_len"]) != fields["latent_len"]
    ):
        raise InteropError(
            f"{where}: latent_len={given['latent_len']} contradicts the compression's "
            f"m = {fields['seq_len'] - fields['latent_len']} at seq_len={fields['seq_len']}"
        )
    given.pop("latent_len", None)
    if name == "llp":
        S = _need(segments, "segments", "the number of segments S (s = n / S)", where)
        fields["segment_len"] = fields["seq_len"] // S
    if name == "enhanced_v2":
        fields["history_segments"] = _need(segments, "segments", "S_h", where)
    try:
        cfg = models.code_faithful(models.ModelConfig(**fields))
        return cfg.replace(**given).validate() if given else cfg
    except (models.ConfigError, TypeError) as e:
        raise InteropError(f"{where}: {e}") from None


def _model_name(state, name, where) -> str:
    keys = set(state)
    if "layers.0.0.fn.to_out_0.weight" in keys:
        found = ("llp",)
    elif "layers.0.0.fn.projection_hist.weight" in keys:
        found = ("enhanced_v3",)
    elif "layers.0.0.fn.w_out.weight" in keys:
        found = ("perceiver_ar",)
    else:
        found = ("enhanced_v1", "enhanced_v2")  # the same tensors
    if name is None:
        if len(found) > 1:
            raise InteropError(
                f"{where}: the tensors fit both enhanced_v1 (DoubleAttention) and enhanced_v2 "
                "(sSplitAttention); say which (--model=enhanced_v2 --segments=S_h)"
            )
        return found[0]
    if name not in found:
        raise InteropError(f"{where}: the tensors are those of {' or '.join(found)}, not {name}")
    return name


def _need(value, flag: str, what: str, where: str):
    if value is None:
        raise InteropError(
            f"{where}: {what} is not in the tensors or the file name; pass --{flag}=..."
        )
    return int(value)


def check_exportable(cfg: models.ModelConfig) -> None:
    """A one-line InteropError unless `cfg` is a model their classes express."""
    if cfg.name not in CLASSES:
        raise InteropError(
            f"model {cfg.name!r} has no class in the authors' code; exportable: {sorted(CLASSES)}"
        )
    faithful = models.code_faithful(cfg)
    structural = ("shared_kv", "kv_head_norm", "rope_layers", "history_mask", "v3_residual",
                  "v3_compress_every_layer", "llp_separate_first_out")  # fmt: skip
    diff = [f"{f}={getattr(cfg, f)!r} (theirs: {getattr(faithful, f)!r})" for f in structural
            if getattr(cfg, f) != getattr(faithful, f)]  # fmt: skip
    if cfg.name == "llp" and cfg.prev_segments != 1:
        diff.append(f"prev_segments={cfg.prev_segments} (theirs: 1)")
    if diff:
        raise InteropError(
            "only a code-faithful model matches the authors' classes; this one differs in "
            + ", ".join(diff)
        )
