"""The authors' PyTorch models (GitHub MetaMain/ECPTransformer) in and out of llp_jax.

Their five classes map onto five code-faithful llp_jax models:

  PerceiverARTransformer               perceiver_ar     (attention output `w_out`)
  DoubleAttentionTransformer           enhanced_v1      (`to_out`)
  sSplitAttentionTransformer           enhanced_v2      (`to_out`; same tensors as V1)
  CompressedDoubleAttentionTransformer enhanced_v3      (`w_out`, `projection_hist`)
  ECPAttentionTransformer              llp              (`to_out`, `to_out_0`)

A checkpoint is what their training script's `save_model` writes ({'epoch', 'state_dict' of the
AutoRegressiveWrapper, keys 'model.*', 'optimizer'}) or a plain `state_dict()` of the model. The
mapping is parameter by parameter: their Linear weights are [out, in] (heads merged as h*d_h + i),
ours [in, heads, d_h] / [heads, d_h, out]; everything else is the same tensor. The config is read
from the tensors where they say it (V, d, L, H from the K/V LayerNorm's size, the FF ratio, RoPE's
theta, V3's m and c, which class) and from their checkpoint file name `trans_<net>_N<n>_H<h>_L<l>
_D<d>_S<s>.pt`; what neither says (n, l, S) comes from the caller, with a one-line error naming
what is missing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any

import numpy as np

from llp_jax import models
from llp_jax.errors import LLPError
from llp_jax.interop import torch_format

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


def read_checkpoint(path: str | os.PathLike) -> AuthorsCheckpoint:
    """Reads a `save_model` file or a plain state dict (no PyTorch needed)."""
    path = os.fspath(path)
    obj = torch_format.load(path)
    if not isinstance(obj, dict):
        raise InteropError(f"{path} holds a {type(obj).__name__}, not a state dict")
    epoch, optimizer = None, None
    if "state_dict" in obj:  # their save_model
        epoch, optimizer, obj = obj.get("epoch"), obj.get("optimizer"), obj["state_dict"]
    state = {str(k): v for k, v in obj.items()}
    if state and all(k.startswith("model.") for k in state):  # the AutoRegressiveWrapper's
        state = {k[len("model.") :]: v for k, v in state.items()}
    if "token_emb.weight" not in state:
        raise InteropError(f"{path}: no 'token_emb.weight'; not a model of the authors' code")
    return AuthorsCheckpoint(state, None if epoch is None else int(epoch), optimizer, path)


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


# ----------------------------------------------------------------------------- the mapping
def _layer_keys(cfg: models.ModelConfig, i: int) -> dict[str, tuple[str, str]]:
    """Their key -> (our path, transform) for layer i."""
    ours = "first_block" if i == 0 else "blocks"
    out = "w_out" if cfg.name in ("perceiver_ar", "enhanced_v3") else "to_out"
    fn, ff = f"layers.{i}.0.fn.", f"layers.{i}.1."
    keys = {
        f"layers.{i}.0.norm.weight": (f"{ours}/norm1/scale", ""),
        f"layers.{i}.0.norm.bias": (f"{ours}/norm1/bias", ""),
        f"{fn}to_q.weight": (f"{ours}/attn/wq", "q"),
        f"{fn}to_kv.weight": (f"{ours}/attn/wkv", "q"),
        f"{fn}norm.weight": (f"{ours}/attn/kv_norm/scale", ""),
        f"{fn}norm.bias": (f"{ours}/attn/kv_norm/bias", ""),
        f"{fn}{out}.weight": (f"{ours}/attn/wo", "o"),
        f"{fn}{out}.bias": (f"{ours}/attn/bo", ""),
        f"{ff}norm.weight": (f"{ours}/norm2/scale", ""),
        f"{ff}norm.bias": (f"{ours}/norm2/bias", ""),
        f"{ff}fn.net.0.weight": (f"{ours}/ff/w_in", "T"),
        f"{ff}fn.net.0.bias": (f"{ours}/ff/b_in", ""),
        f"{ff}fn.net.3.weight": (f"{ours}/ff/w_out", "T"),
        f"{ff}fn.net.3.bias": (f"{ours}/ff/b_out", ""),
    }
    if cfg.name == "llp":
        keys[f"{fn}to_out_0.weight"] = (f"{ours}/wo0", "o")
        keys[f"{fn}to_out_0.bias"] = (f"{ours}/bo0", "")
    if cfg.name == "enhanced_v3":
        keys[f"{fn}projection_hist.weight"] = (f"{ours}/compress_w", "T")
        keys[f"{fn}projection_hist.bias"] = (f"{ours}/compress_b", "")
    return keys


def key_map(cfg: models.ModelConfig) -> dict[str, tuple[str, str]]:
    """Every learnable tensor of their model: their key -> (our path, transform)."""
    keys = {
        "token_emb.weight": ("embed", ""),
        "to_logits.0.weight": ("final_norm/scale", ""),
        "to_logits.0.bias": ("final_norm/bias", ""),
        "to_logits.1.weight": ("head_w", "T"),
        "to_logits.1.bias": ("head_b", ""),
    }
    for i in range(cfg.num_layers):
        keys.update(_layer_keys(cfg, i))
    return keys


def _to_ours(x: np.ndarray, transform: str, cfg: models.ModelConfig) -> np.ndarray:
    H, Dh, d = cfg.num_heads, cfg.head_dim, cfg.d_model
    if transform == "q":  # [h*Dh + k, d_in] -> [d_in, h, k]
        return x.T.reshape(d, H, Dh)
    if transform == "o":  # [d_out, h*Dh + k] -> [h, k, d_out]
        return x.T.reshape(H, Dh, d)
    return x.T if transform == "T" else x


def _to_theirs(x: np.ndarray, transform: str) -> np.ndarray:
    if transform == "q":
        return x.reshape(x.shape[0], -1).T
    if transform == "o":
        return x.reshape(-1, x.shape[-1]).T
    return x.T if transform == "T" else x


def to_params(ckpt: AuthorsCheckpoint, cfg: models.ModelConfig) -> dict:
    """llp_jax's params (a nested dict, as `nnx.to_pure_dict` gives) from their state dict.

    Raises:
      InteropError: a missing or unknown tensor, or a tensor of the wrong shape.
    """
    mapping, state, where = key_map(cfg), ckpt.state, ckpt.path
    learnable = {k for k in state if not k.endswith("pos_emb.freqs")}
    missing, unknown = sorted(set(mapping) - learnable), sorted(learnable - set(mapping))
    if missing:
        raise InteropError(f"{where}: missing tensor(s) {missing[:4]} for a {cfg.name} model")
    if unknown:
        raise InteropError(f"{where}: unknown tensor(s) {unknown[:4]} for a {cfg.name} model")
    shapes, flat = models.param_shapes(cfg), {}
    for theirs, (ours, transform) in mapping.items():
        value = np.asarray(state[theirs])
        if value.dtype != np.float32:
            value = value.astype(np.float32)
        try:
            array = _to_ours(value, transform, cfg)
        except ValueError:
            array = None
        layer = theirs.startswith("layers.") and not theirs.startswith("layers.0.")
        want = shapes[ours][1:] if layer else shapes[ours]
        if array is None or array.shape != want:
            raise InteropError(
                f"{where}: {theirs} has shape {value.shape}, which does not fit {ours} {want} "
                f"of the inferred config (d={cfg.d_model}, H={cfg.num_heads})"
            )
        flat.setdefault(ours, []).append(array)
    params: dict = {}
    for ours, arrays in flat.items():
        stacked = np.stack(arrays) if ours.startswith("blocks/") else arrays[0]
        node = params
        *parents, leaf = ours.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = stacked
    return params


def rope_freqs(cfg: models.ModelConfig) -> np.ndarray:
    """Their RotaryEmbedding's `freqs` buffer for our config (theta^(-2i / d_h), float32)."""
    Dh = cfg.head_dim
    return (1.0 / (cfg.rope_theta ** (np.arange(0, Dh, 2, dtype=np.float32) / Dh))).astype(
        np.float32
    )


def from_params(params: dict, cfg: models.ModelConfig, freqs: np.ndarray | None = None) -> dict:
    """Their state dict (keys without 'model.') from llp_jax params of a code-faithful model;
    `freqs` is the RoPE buffer to write (default: computed, see `rope_freqs`)."""
    check_exportable(cfg)
    freqs = rope_freqs(cfg) if freqs is None else np.asarray(freqs, np.float32)
    state = {}
    for theirs, (ours, transform) in key_map(cfg).items():
        node = params
        for part in ours.split("/"):
            node = node[part]
        value = np.asarray(node)
        if ours.startswith("blocks/"):
            value = value[int(theirs.split(".")[1]) - 1]
        state[theirs] = np.ascontiguousarray(_to_theirs(value, transform))
    ordered = {}
    for key in _their_order(cfg):
        ordered[key] = freqs if key.endswith("pos_emb.freqs") else state[key]
    return ordered


def _their_order(cfg: models.ModelConfig) -> list[str]:
    """Keys in the order their modules register them (what `state_dict()` lists)."""
    out = "w_out" if cfg.name in ("perceiver_ar", "enhanced_v3") else "to_out"
    keys = ["token_emb.weight"]
    for i in range(cfg.num_layers):
        fn = f"layers.{i}.0.fn."
        attn = [f"{fn}norm.weight", f"{fn}norm.bias", f"{fn}pos_emb.freqs", f"{fn}to_q.weight",
                f"{fn}to_kv.weight", f"{fn}{out}.weight", f"{fn}{out}.bias"]  # fmt: skip
        if cfg.name == "llp":
            attn += [f"{fn}to_out_0.weight", f"{fn}to_out_0.bias"]
        if cfg.name == "enhanced_v3":
            attn += [f"{fn}projection_hist.weight", f"{fn}projection_hist.bias"]
        ff = f"layers.{i}.1."
        keys += attn + [f"layers.{i}.0.norm.weight", f"layers.{i}.0.norm.bias"]
        keys += [f"{ff}fn.net.0.weight", f"{ff}fn.net.0.bias", f"{ff}fn.net.3.weight",
                 f"{ff}fn.net.3.bias", f"{ff}norm.weight", f"{ff}norm.bias"]  # fmt: skip
    return keys + ["to_logits.0.weight", "to_logits.0.bias", "to_logits.1.weight",
                   "to_logits.1.bias"]  # fmt: skip


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


def optimizer_groups(cfg: models.ModelConfig, lr: float = 2e-4) -> dict:
    """An empty-state optimizer state dict with their `configure_optimizers` groups (decay on
    Linear weights, none on biases, LayerNorm and embedding weights), so their script's
    `optim.load_state_dict` accepts an exported file; AdamW's moments start afresh there."""
    decay = sorted(k for k, (_, t) in key_map(cfg).items() if t and k != "token_emb.weight")
    no_decay = sorted(k for k in key_map(cfg) if k not in decay)
    common = dict(lr=lr, betas=(0.9, 0.95), eps=1e-8, amsgrad=False, maximize=False,
                  foreach=None, capturable=False, differentiable=False, fused=None,
                  decoupled_weight_decay=True)  # fmt: skip
    return {
        "state": {},
        "param_groups": [
            {**common, "weight_decay": 0.1, "params": list(range(len(decay)))},
            {
                **common,
                "weight_decay": 0.0,
                "params": list(range(len(decay), len(decay) + len(no_decay))),
            },
        ],  # fmt: skip
    }


def num_parameters(cfg: models.ModelConfig) -> int:
    """Learnable parameters of their model for `cfg` (= llp_jax's count of the same config)."""
    shapes = models.param_shapes(cfg)
    return int(sum(math.prod(s) for s in shapes.values()))
