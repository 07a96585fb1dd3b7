"""What `experiments/evaluate.py` and `experiments/sample.py` do, as library functions.

A model comes from a workdir's checkpoint (`checkpoints.load_model`) or, with only a config, is
freshly initialised (a smoke test of the pipeline). The data settings come from the --config if
given, else from the workdir when the training run recorded them, else the defaults (the embedded
Austen corpus, byte tokens); the tokenizer must fit the model's vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from llp_jax import models, paths
from llp_jax.data import DataConfig, build_datasets, count_words
from llp_jax.evaluation import checkpoints, perplexity, sampling
from llp_jax.evaluation.errors import EvaluationError


@dataclasses.dataclass
class Setup:
    """A model with the data it is evaluated on."""

    model: models.LanguageModel
    config: models.ModelConfig
    data: Any  # llp_jax.data.Datasets
    source: str  # "checkpoint step S in W" or "untrained (config)"


def _data_section(config, loaded) -> DataConfig:
    if config is not None and "data" in config:
        return DataConfig.from_any(config.data)
    if loaded is not None and loaded.data_config:
        return DataConfig.from_any(loaded.data_config)
    return DataConfig()


def setup(
    workdir: str | None = None,
    config: ml_collections.ConfigDict | None = None,
    *,
    step: int | None = None,
) -> Setup:
    """Loads the model (workdir checkpoint, or a fresh one from `config`) and its data.

    Raises:
      ValueError (CheckpointError, ConfigError, DataError): one-line messages.
    """
    if workdir is None and config is None:
        raise EvaluationError(
            "give a workdir (a trained checkpoint) or a config (an untrained model)"
        )
    loaded = None
    if workdir is not None:
        loaded = checkpoints.load_model(
            workdir, model_config=None if config is None else config.model, step=step
        )
    data_cfg = _data_section(config, loaded)
    seq_len = loaded.config.seq_len if loaded else int(config.model.seq_len)
    data = build_datasets(data_cfg, seq_len)
    vocab = data.tokenizer.vocab_size
    if loaded is not None:
        model, cfg = loaded.model, loaded.config
        source = f"checkpoint step {loaded.step} in {workdir}"
    else:
        fields = dict(config.model)
        fields["vocab_size"] = fields.get("vocab_size") or vocab
        cfg = models.ModelConfig.from_any(fields)
        seed = config.train.seed if "train" in config else 0
        model = models.build(cfg, seed=int(seed))
        source = "untrained (initialised from the config)"
    if cfg.vocab_size < vocab:
        raise checkpoints.CheckpointError(
            f"tokenizer {data.tokenizer.name} has {vocab} ids but the model's vocab_size is "
            f"{cfg.vocab_size}; pass the --config the model was trained with"
        )
    return Setup(model, cfg, data, source)


def default_protocols(cfg: models.ModelConfig) -> list[str]:
    """Every protocol that applies: 'stream' where the model has a streaming form."""
    return ["standard", "paper"] + (["stream"] if cfg.model_class.can_stream else [])


def evaluate(
    s: Setup,
    *,
    split: str = "validation",
    protocols: Sequence[str] | None = None,
    window: int | None = None,
    stride: int | None = None,
    paper_stride: int | None = None,
    batch_size: int = 8,
    max_tokens: int = 0,
) -> list[perplexity.PerplexityResult]:
    """Every requested protocol on a split; `max_tokens` > 0 evaluates only its first tokens."""
    tokens = s.data.eval_tokens(split)
    if max_tokens and max_tokens < len(tokens):
        tokens = tokens[:max_tokens]
        text = s.data.tokenizer.decode(tokens)
        units = {
            "num_bytes": len(text.encode("utf-8")),
            "num_chars": len(text),
            "num_words": count_words(text),
        }
    else:
        splits = s.data.corpus.splits  # corpora read from disk keep no training text
        units = {
            "num_bytes": s.data.num_bytes[split],
            "num_chars": len(splits[split]) if split in splits else None,
            "num_words": s.data.words[split],
        }
    pad = max(s.data.tokenizer.pad_id, 0)
    results = []
    for protocol in protocols or default_protocols(s.config):
        results.append(
            perplexity.evaluate_perplexity(
                s.model,
                tokens,
                protocol=protocol,
                window=window,
                stride=paper_stride if protocol == "paper" else stride,
                batch_size=batch_size,
                pad_id=pad,
                **units,
            )
        )
    return results


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(results: Sequence[perplexity.PerplexityResult]) -> str:
    """A markdown table, one row per protocol."""
    head = (
        "| protocol | window | stride | windows | scored | distinct targets | loss (nats) | "
        "token ppl | bits/token | bits/byte | bits/char | word ppl |"
    )
    rows = [head, "|" + "---|" * 12]
    for r in results:
        rows.append(
            f"| {r.protocol} | {r.window} | {r.stride} | {r.num_windows} | {r.num_scored:,} | "
            f"{r.num_targets:,} | {r.loss:.4f} | {r.perplexity:.3f} | {r.bits_per_token:.4f} | "
            f"{_fmt(r.bits_per_byte, '.4f')} | {_fmt(r.bits_per_char, '.4f')} | "
            f"{_fmt(r.word_perplexity, '.3f')} |"
        )
    return "\n".join(rows)


def write_json(path: str, s: Setup, split: str, results) -> None:
    report = {
        "model": dataclasses.asdict(s.config),
        "source": s.source,
        "split": split,
        "tokenizer": s.data.tokenizer.name,
        "corpus": s.data.corpus.name,
        "results": [r.to_dict() for r in results],
    }
    paths.write_text(path, json.dumps(report, indent=2))


def sample(
    s: Setup,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    num_samples: int = 1,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_id: int | None = None,
    method: str = "auto",
    slide: int | None = None,
) -> list[str]:
    """Continuations of `prompt` (decoded text, prompt included), one per sample."""
    ids = np.asarray(s.data.tokenizer.encode(prompt), np.int32)
    if ids.size == 0:
        raise EvaluationError("the prompt encodes to no tokens; give a non-empty --prompt")
    prompt_BxP = np.repeat(ids[None], num_samples, axis=0)
    pad = max(s.data.tokenizer.pad_id, 0)
    out = sampling.generate(
        s.model,
        prompt_BxP,
        max_new_tokens,
        jax.random.key(seed),
        method=method,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        stop_id=stop_id,
        pad_id=pad,
        slide=slide,
    )
    return [s.data.tokenizer.decode(row) for row in np.asarray(out)]
