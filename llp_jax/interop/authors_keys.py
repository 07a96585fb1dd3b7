"""The authors' tensors and llp_jax's parameters, key by key (`authors` reads their files).

`key_map` names, for a code-faithful config, every learnable tensor of their model with our
parameter path and the transform between layouts: their Linear weights are [out, in] (heads
merged as h*d_h + i), ours [in, heads, d_h] ('q') or [heads, d_h, out] ('o'), a plain transpose
('T') for the feed-forward, compression and head matrices, the same tensor otherwise. Layers
2..L are one stacked array of ours (the scanned blocks) and one key per layer of theirs.
"""

from __future__ import annotations

import numpy as np

from llp_jax import models
from llp_jax.interop.authors import AuthorsCheckpoint, InteropError, check_exportable


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
