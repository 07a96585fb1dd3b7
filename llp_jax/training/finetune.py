"""Starting from a trained model: `train.init_from` (weights only) and `train.trainable`.

`init_from='WORKDIR[:STEP]'` loads the parameters of another run's checkpoint (the newest step,
or STEP) and nothing else: a fresh optimizer, the new config's data, a step counter from 0. The
new model may differ from the source wherever its parameters keep their shapes, which is how a
context is extended (LongLoRA's use case: train short, fine-tune longer): every model but
enhanced_v3, whose history compression is a Linear over exactly n - l positions, takes another
seq_len, its segment and latent sizes validated again for it.

The fine-tuned run keeps the source's token ids: its tokenizer is the source run's (kept in the
source workdir), not one trained anew on the new text, whose ids would silently scramble every
embedding row; a tokenizer setting that cannot give the source's ids is a one-line error.

`trainable` freezes part of the model: 'all', 'longlora' (LongLoRA's trainable set: embeddings,
LayerNorms and attention; the feed-forward layers and the output head stay frozen), or a regular
expression that trainable parameter paths match ('attn|norm'). `lora_rank` > 0 trains the
attention projections among them as low-rank updates (lora.py), as LongLoRA does. What shapes
the optimizer state (`optimizer_layout`) is saved with each checkpoint and kept by a resume.
"""

from __future__ import annotations

import os
import re

import jax
import optax
from flax import nnx

from llp_jax import models, paths
from llp_jax.data import DataConfig, tokenizers, workdir_store
from llp_jax.data.tokenizer_specs import FROM_CORPUS
from llp_jax.errors import ConfigError
from llp_jax.storage import (
    CheckpointNotFoundError,
    committed_steps,
    load_params,
    newest_readable,
    no_checkpoint,
    read_meta,
)
from llp_jax.training import lora

_NO_RUN = "name a trained run's workdir (WORKDIR or WORKDIR:STEP)"
# LongLoRA trains its embeddings and normalisation layers in full and its attention as low-rank
# updates (here: train.lora_rank > 0; 0 trains the projections in full); the feed-forward layers
# and the head are frozen.
LONGLORA = r"(^|/)(embed|final_norm|norm1|norm2|attn|wo0|bo0|compress_w|compress_b)(/|$)"


def parse_init_from(spec: str) -> tuple[str, int | None]:
    """'WORKDIR' or 'WORKDIR:STEP' (a URL's own ':' is not a step)."""
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isdigit() and head and not head.endswith(":/"):
        return head, int(tail)
    return spec, None


def _source_steps(spec: str, workdir: str, step: int | None) -> tuple[str, list[int]]:
    """The source's checkpoint directory and its committed steps, or one line: no run there, or
    a run named with something after ':' that is not a step (RUN:x)."""
    directory = paths.join(workdir, "checkpoints")
    steps = committed_steps(directory)
    if not steps:
        head, _, tail = spec.rpartition(":")
        if (
            step is None
            and head
            and (head_steps := committed_steps(paths.join(head, "checkpoints")))
        ):
            raise ConfigError(f"train.init_from={spec!r}: {tail!r} after ':' is not a step; give "
                              f"{head}:STEP, a step of {head_steps}")  # fmt: skip
        raise ConfigError(f"train.init_from={spec!r}: {no_checkpoint(directory, _NO_RUN)}")
    return directory, steps


def check_source(spec: str, target: str = "", *, resume: bool = True) -> None:
    """Up front, before any data or compilation: `train.init_from` names a checkpoint, and not
    the `target` workdir's own when --noresume is about to set that run aside."""
    if not spec:
        return
    workdir, step = parse_init_from(spec)
    if not resume and target and _same(workdir, target):
        raise ConfigError(
            f"train.init_from={spec!r} is this --workdir, whose run --noresume sets aside (into "
            "previous_runs/) before training starts; train into another --workdir with "
            f"init_from={spec!r}, or keep this one and leave out --noresume"
        )
    directory, steps = _source_steps(spec, workdir, step)
    if step is not None and step not in steps:
        raise ConfigError(f"train.init_from={spec!r}: no step {step} in {directory} ({steps})")


def _source_record(spec: str) -> dict | None:
    """The source run's data record (None: a workdir written before runs kept one)."""
    return workdir_store.read_record(parse_init_from(spec)[0])


def source_tokenizer(spec: str, data: DataConfig) -> tokenizers.Tokenizer | None:
    """The tokenizer a fresh run from `init_from=spec` must use: the source's own where `data`
    would build one from the new text ('sentencepiece', 'txl_bytes'), else None (build as
    `data` says; the result is then held to the source's ids by `check_tokenizer`). A byte source with a
    SentencePiece setting, or the reverse, is refused before any data is read."""
    record = _source_record(spec) if spec else None
    if record is None:
        return None
    byte_source = record["tokenizer"] == tokenizers.ByteTokenizer.name
    if byte_source != (data.tokenizer == "byte"):
        want = "'byte'" if byte_source else f"'sentencepiece' (the source's {record['tokenizer']})"
        raise ConfigError(f"train.init_from={spec!r}: the source was trained on tokenizer "
                          f"{record['tokenizer']}, but data.tokenizer={data.tokenizer!r}; its "
                          f"weights need the same token ids: set data.tokenizer={want}")  # fmt: skip
    if byte_source or data.tokenizer not in FROM_CORPUS or data.is_tfds:
        return None  # (a tfds corpus keeps its tokenizer with its prepared tokens)
    return workdir_store.tokenizer(parse_init_from(spec)[0], record)


def check_tokenizer(spec: str, tokenizer: tokenizers.Tokenizer) -> None:
    """The run's tokenizer gives the source run's token ids (a SentencePiece model file named in
    data.tokenizer, a tokenizer.json, or one trained with a tfds corpus, may not)."""
    record = _source_record(spec) if spec else None
    if record is None or record["tokenizer"] == tokenizers.ByteTokenizer.name:
        return
    source = workdir_store.tokenizer(parse_init_from(spec)[0], record)
    if getattr(tokenizer, "file_bytes", None) != source.file_bytes:
        raise ConfigError(
            f"train.init_from={spec!r}: this run's tokenizer ({tokenizer.name}) is not the "
            f"source's ({record['tokenizer']}), so its token ids differ; set data.tokenizer to "
            f"{paths.join(parse_init_from(spec)[0], workdir_store.FOLDER, source.file_name)}"
        )


def _same(a: str, b: str) -> bool:
    return os.fspath(paths.resolve(a)).rstrip("/") == os.fspath(paths.resolve(b)).rstrip("/")


def init_params(spec: str, cfg: models.ModelConfig, target: nnx.State) -> tuple[nnx.State, str]:
    """The parameters of checkpoint `spec` placed like `target` (the new run's sharded params);
    returns (params, a description of where they came from).

    Raises:
      ConfigError: no such checkpoint, or a source whose parameters do not fit `cfg`.
    """
    workdir, step = parse_init_from(spec)
    directory, steps = _source_steps(spec, workdir, step)
    # Meta and weights read together: a source still training may delete the step in between.
    read = lambda at: (read_meta(directory, at), load_params(directory, at))  # noqa: E731
    fix = f"name another step of that run (train.init_from={workdir}:STEP, of {steps})"
    if step is not None and step not in steps:
        raise ConfigError(f"train.init_from={spec!r}: no step {step} in {directory} ({steps})")
    # The newest intact step (damaged ones skipped with a warning), or the one named.
    try:
        step, (meta, loaded) = newest_readable(
            directory, read, None if step is None else [step], fix
        )
    except CheckpointNotFoundError as e:
        raise ConfigError(f"train.init_from={spec!r}: {e}") from None
    source = models.ModelConfig.from_any(meta["model"])
    if source.name != cfg.name:
        raise ConfigError(f"train.init_from: the source is a {source.name}, not a {cfg.name}")
    if source.seq_len != cfg.seq_len and source.model_class.fixed_window:
        raise ConfigError(
            f"train.init_from: {cfg.name}'s parameters are sized by seq_len (its history "
            f"compression is a Linear over n - l positions): the source's {source.seq_len} "
            f"cannot become {cfg.seq_len}"
        )
    want, have = models.param_shapes(cfg), models.param_shapes(source)
    diffs = [f"{p} {have.get(p)} vs {want.get(p)}" for p in sorted(set(want) | set(have))
             if want.get(p) != have.get(p)]  # fmt: skip
    if diffs:
        raise ConfigError(
            f"train.init_from: the source's parameters do not fit this model: {'; '.join(diffs[:3])}"
            " (source vs this config)"
        )
    graphdef_state = nnx.to_pure_dict(target)
    placed = jax.tree.map(lambda new, old: jax.device_put(new, old.sharding), loaded,
                          graphdef_state)  # fmt: skip
    params = jax.tree.map(lambda x: x, target)
    nnx.replace_by_pure_dict(params, placed)
    return params, f"the weights of step {step} in {workdir}"


def _path_name(path) -> str:
    names = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
    return "/".join(n for n in names if n != "value")


def trainable_labels(params: nnx.State, trainable: str):
    """'train' / 'frozen' for every parameter (a prefix tree of the params), or None for 'all'.
    A pattern that matches no parameter is refused: a typo ('longlor', 'atn') would otherwise
    freeze the whole model and train nothing, without a word."""
    if trainable == "all":
        return None
    pattern = re.compile(LONGLORA if trainable == "longlora" else trainable)
    is_leaf = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: "train" if pattern.search(_path_name(path)) else "frozen",
        params,
        is_leaf=is_leaf,
    )
    if "train" not in jax.tree.leaves(labels):
        names = [_path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(params, is_leaf)]
        raise ConfigError(
            f"train.trainable={trainable!r} matches no parameter of this model, so nothing would "
            f"train; its parameter paths are {', '.join(names[:8])}"
            + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            + "; use 'all', 'longlora' or a regular expression that matches some of them"
        )
    return labels


def trainable_summary(params: nnx.State, labels, train) -> str | None:
    """'trainable: N of M parameters (...)' for a run that freezes some or trains LoRA factors;
    None for 'all' in full."""
    if labels is None:
        return None
    total = sum(int(x.size) for x in jax.tree.leaves(params))
    trained = lora.parameter_count(params, labels, train.lora_rank)
    how = f"train.trainable={train.trainable!r}"
    if train.lora_rank:
        how += f", attention as rank-{train.lora_rank} LoRA updates"
    frozen = "; the rest frozen" if "frozen" in jax.tree.leaves(labels) else ""
    return f"trainable: {trained:,} of {total:,} parameters ({how}{frozen})"


def optimizer(tx: optax.GradientTransformation, params: nnx.State, train):
    """(`tx` restricted to what `train.trainable` and `train.lora_rank` train, `trained`: a bool
    per parameter for `make_train_step`, None when all train in full). Frozen parameters get no
    update (nor weight decay), LoRA parameters train through their factors (lora.py). Prints
    the trainable count when not everything trains in full."""
    labels = trainable_labels(params, train.trainable)
    if train.lora_rank:
        labels = lora.mark(params, labels, train.lora_rank)
    if (line := trainable_summary(params, labels, train)) is not None:
        print(line)
    if labels is None:
        return tx, None
    trained = jax.tree.map(lambda label: label != "frozen", labels)
    if train.lora_rank:
        return lora.lora(tx, labels, rank=train.lora_rank, alpha=train.lora_alpha,
                         seed=train.seed), trained  # fmt: skip
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels), trained


def optimizer_layout(train) -> dict:
    """The settings that decide the optimizer state's layout (which parameters have moments, the
    LoRA factors' shapes, a clipping stage): saved with every checkpoint, so a resume that
    changes them is refused by name (`check_resumed_layout`) instead of failing inside Orbax."""
    return {"trainable": train.trainable, "lora_rank": int(train.lora_rank),
            "clipped": float(train.clip_norm) > 0}  # fmt: skip


def check_resumed_layout(saved: dict | None, train, directory: str, workdir: str) -> None:
    """A resumed run continues the checkpoint's optimizer state, so it keeps the settings that
    shaped it; `saved` is None for checkpoints written before they were recorded."""
    now = optimizer_layout(train)
    if not saved or saved == now:
        return
    names = {"trainable": "train.trainable", "lora_rank": "train.lora_rank"}

    def setting(layout, key):
        if key == "clipped":
            return "train.clip_norm " + ("> 0" if layout[key] else "<= 0 (no clipping)")
        return f"{names[key]}={layout[key]!r}"

    changed = [key for key in now if key in saved and saved[key] != now[key]]
    if not changed:
        return
    raise ConfigError(
        f"the checkpoint in {directory} was trained with "
        f"{', '.join(setting(saved, k) for k in changed)}, whose optimizer state "
        f"{', '.join(setting(now, k) for k in changed)} cannot continue; set "
        f"{'it' if len(changed) == 1 else 'them'} back to resume, or train a new run from its "
        f"weights (another --workdir with train.init_from={workdir})"
    )
