"""The authors' checkpoints as llp_jax workdirs, and llp_jax workdirs as the authors' checkpoints.

`import_checkpoint` writes a weights-only checkpoint step (the params, and a meta item with the
code-faithful model config, the data config and where the weights came from) into a workdir:
`experiments.evaluate` and `experiments.sample` read it like any other, and `experiments.train`
continues from it (fresh optimizer moments and data order, the step counter and learning-rate
schedule where the authors' run stopped). `export_checkpoint` writes the params of a workdir
step as their `save_model` file (or a plain state dict) that their classes load with
`load_state_dict(strict=True)`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from flax import nnx

from llp_jax import models, paths
from llp_jax.data import ByteTokenizer, DataConfig
from llp_jax.data.tokenizer_specs import their_vocabulary
from llp_jax.interop import authors, authors_keys, safetensors_format, torch_format
from llp_jax.interop.authors import InteropError
from llp_jax.storage import Checkpointer, committed_steps, load_params, no_checkpoint, read_meta
from llp_jax.storage.workdir import PREVIOUS, WorkdirLock, check_path, previous_run, set_aside


def import_checkpoint(
    path: str,
    workdir: str,
    *,
    data_config: Any = None,
    overwrite: bool = False,
    **hints: Any,
) -> tuple[models.ModelConfig, int]:
    """Converts an authors' checkpoint into `workdir`; returns (config, step).

    Args:
      path: their `save_model` file or a plain state dict.
      workdir: created if needed; it must hold no other run (checkpoints, data record, logs)
        unless `overwrite`, which moves that run into `previous_runs/` (as --noresume does).
      data_config: the data section evaluation and training will use (default: DataConfig()).
      **hints: what the tensors cannot say (see `authors.infer_config`).

    Raises:
      InteropError: one line naming the tensor or setting at fault.
      WorkdirError: a workdir path no run could use (a file where a folder must be, ...).
    """
    check_path(workdir)  # before the (possibly large) file is read
    ckpt = authors.read_checkpoint(path)
    cfg = authors.infer_config(ckpt, **hints)
    params = authors_keys.to_params(ckpt, cfg)
    directory = paths.join(workdir, "checkpoints")
    step = ckpt.epoch or 0
    graphdef, state = nnx.split(models.abstract_model(cfg))
    nnx.replace_by_pure_dict(state, params)
    freqs = ckpt.state.get("layers.0.0.fn.pos_emb.freqs")
    meta = {
        "model": models.config.as_dict(cfg),
        "data": dataclasses.asdict(DataConfig.from_any(data_config)),
        "weights_only": True,
        "source": {
            "authors_checkpoint": path if paths.is_url(path) else os.path.abspath(path),
            "class": authors.CLASSES[cfg.name],
            # Their RoPE buffer, bit for bit, so an export writes back exactly what came in.
            "rope_freqs": None if freqs is None else [float(f) for f in np.asarray(freqs)],
        },
    }
    paths.makedirs(workdir)
    with WorkdirLock(workdir):  # not under a running trainer's feet
        previous = previous_run(workdir)
        if previous and not overwrite:
            raise InteropError(
                f"{workdir} holds another run ({', '.join(previous[:3])}); pass --overwrite to "
                f"keep it in {paths.join(workdir, PREVIOUS)}/, or give another --workdir"
            )
        if previous:  # moved, not deleted: its data record and logs would belong to no model
            print(f"--overwrite: the previous run in {workdir} is kept in {set_aside(workdir)}")
        with Checkpointer(directory, async_save=False, keep_best=False) as out:
            out.save(step, {"params": state}, meta=meta, force=True)
    return cfg, step


def vocabulary_note(cfg: models.ModelConfig, data_config: Any = None) -> str:
    """A note where the data section records byte tokens but the checkpoint's vocabulary is
    another (evaluation would read bytes as its ids: a wrong number, or an error later);
    '' where they agree or the data section names its own tokenizer."""
    data = DataConfig.from_any(data_config)
    if data.tokenizer != "byte" or cfg.vocab_size == ByteTokenizer.vocab_size:
        return ""
    what, fix = their_vocabulary(cfg.vocab_size)
    what = what or "not bytes"
    return (f"note: the checkpoint's {cfg.vocab_size} token ids are {what}, but the data section "
            f"recorded reads bytes ({ByteTokenizer.vocab_size} ids); import again with --overwrite and {fix}")  # fmt: skip


def export_checkpoint(
    workdir: str, out_path: str, *, step: int | None = None, plain: bool = False
) -> tuple[models.ModelConfig, int]:
    """Writes a workdir step's params as an authors' checkpoint; returns (config, step).

    Args:
      workdir: an llp_jax workdir of a code-faithful model.
      out_path: the .pt file to write; a name ending .safetensors writes the tensors alone in
        that format, as `safetensors.torch.save_model(wrapper or net, f)` would (their
        `load_model` reads it back, strict).
      step: default the newest.
      plain: a plain state dict of their model (`net.state_dict()`) instead of their
        `save_model` file ({'epoch', 'state_dict' of the AutoRegressiveWrapper, 'optimizer'}).
    """
    directory = paths.join(workdir, "checkpoints")
    steps = committed_steps(directory)
    if not steps:
        raise InteropError(no_checkpoint(directory, "train or import first"))
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise InteropError(f"no checkpoint for step {step} in {directory} (steps: {steps})")
    meta = read_meta(directory, step)
    try:
        cfg = models.ModelConfig.from_any(meta.get("model") or {})
    except models.ConfigError as e:
        raise InteropError(f"checkpoint step {step} in {directory}: {e}") from None
    authors.check_exportable(cfg)
    freqs = (meta.get("source") or {}).get("rope_freqs")
    state = authors_keys.from_params(load_params(directory, step), cfg, freqs)
    if str(out_path).endswith(".safetensors"):  # tensors only: no epoch, no optimizer
        tensors = state if plain else {f"model.{k}": v for k, v in state.items()}
        rope = [k for k in tensors if k.endswith("pos_emb.freqs")]  # one module in all layers
        safetensors_format.save(tensors, out_path, shared=[rope] if len(rope) > 1 else [])
    elif plain:
        torch_format.save(state, out_path)
    else:
        torch_format.save(
            {
                "epoch": step,
                "state_dict": {f"model.{k}": v for k, v in state.items()},
                "optimizer": authors_keys.optimizer_groups(cfg),
            },
            out_path,
        )
    return cfg, step
