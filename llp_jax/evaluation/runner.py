"""What `experiments/evaluate.py` and `experiments/sample.py` do, as library functions.

A model comes from a workdir's checkpoint (`checkpoints.load_model`) or, with only a config, is
freshly initialised (a smoke test of the pipeline). The data settings come from the --config if
given, else from the workdir when the training run recorded them, else the defaults (the embedded
Austen corpus, byte tokens); the tokenizer must fit the model's vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ml_collections
import numpy as np

from llp_jax import models, paths, strict_json
from llp_jax.data import count_words
from llp_jax.data.tokenizer_specs import their_vocabulary
from llp_jax.data.txl_bytes import TxlByteTokenizer
from llp_jax.evaluation import checkpoints, eval_data, perplexity, sample_settings, sampling
from llp_jax.evaluation.errors import EvaluationError
from llp_jax.evaluation.protocol_plan import check_evaluate_args, plan_protocols, protocol_list
from llp_jax.models.inputs import seed_key
from llp_jax.models.losses import perplexity_text


@dataclasses.dataclass
class Setup:
    """A model with the data it is evaluated on."""

    model: models.LanguageModel
    config: models.ModelConfig
    data: Any  # llp_jax.data.Datasets
    source: str  # "checkpoint step S in W" or "untrained (config)"


def setup(
    workdir: str | None = None,
    config: ml_collections.ConfigDict | None = None,
    *,
    step: int | None = None,
    text: str | None = None,
    text_field: str = "text",
    allow_data_change: bool = False,
    training_split: bool = False,
) -> Setup:
    """Loads the model (workdir checkpoint, or a fresh one from `config`) and its data.

    Args:
      workdir: a training workdir; its own data record is the default data.
      config: an experiment config: the model without a workdir; its data section replaces the
        workdir's only if it is the same data or `allow_data_change`.
      step: a checkpoint step (default: the newest).
      text: files, folders or JSON Lines (a corpus spec) to evaluate instead, as one split
        'text', tokenised with the workdir's own tokenizer.
      text_field: the JSON field or Parquet / CSV / TSV column of `text` that holds the text.
      allow_data_change: accept a --config data section other than the workdir's.
      training_split: the workdir's training text too, read again from its corpus (a workdir
        keeps only its evaluation splits), e.g. for the train perplexity beside validation's.

    Raises:
      LLPError (CheckpointError, ConfigError, DataError, EvaluationError): one-line messages.
    """
    if workdir is None and config is None:
        raise EvaluationError(
            "give a workdir (a trained checkpoint) or a config (an untrained model)"
        )
    if workdir is None and step is not None:  # it chose nothing: the model is untrained
        raise EvaluationError(f"step={step} is a checkpoint of a workdir; give the workdir, or "
                              "no step for the untrained model of the config")  # fmt: skip
    loaded = None
    if workdir is not None:
        loaded = checkpoints.load_model(
            workdir, model_config=None if config is None else config.model, step=step
        )
    seq_len = loaded.config.seq_len if loaded else int(config.model.seq_len)
    data = eval_data.load(workdir, config, loaded, seq_len, text=text, text_field=text_field,
                          allow_data_change=allow_data_change,
                          training_split=training_split)  # fmt: skip
    vocab = data.tokenizer.vocab_size
    if loaded is not None:
        model, cfg = loaded.model, loaded.config
        source = f"checkpoint step {loaded.step} in {workdir}"
    else:
        fields = dict(config.model)
        fields["vocab_size"] = fields.get("vocab_size") or vocab
        if fields.get("document_mask") and fields.get("eod_id", -1) < 0:
            fields["eod_id"] = data.tokenizer.eod_id
        cfg = models.ModelConfig.from_any(fields)
        seed = config.train.seed if "train" in config else 0
        model = models.build(cfg, seed=int(seed))
        source = "untrained (initialised from the config)"
    _check_vocabulary(cfg, data.tokenizer, loaded, workdir)
    return Setup(model, cfg, data, source)


def _check_vocabulary(cfg, tokenizer, loaded, workdir) -> None:
    """The tokenizer gives the model's ids: one line where it cannot (a model smaller than its
    vocabulary; a txl_bytes numbering of other data; an authors' checkpoint read with a
    tokenizer of another size, whose scores would be of the wrong ids)."""
    vocab = tokenizer.vocab_size
    if isinstance(tokenizer, TxlByteTokenizer) and cfg.vocab_size != vocab:
        raise checkpoints.CheckpointError(  # the same bytes numbered otherwise
            f"tokenizer {tokenizer.name} numbers this data's {vocab} byte values but the "
            f"model has {cfg.vocab_size} ids: it counted other data than the model was trained "
            "on (for the authors' enwik8 checkpoints, the original enwik8: 204)"
        )
    their = (loaded.source or {}).get("authors_checkpoint") if loaded else None
    if their and cfg.vocab_size != vocab:
        what, fix = their_vocabulary(cfg.vocab_size)
        raise checkpoints.CheckpointError(
            f"{workdir} holds the authors' {their} with {cfg.vocab_size} token ids"
            f"{f' ({what})' if what else ''}, but tokenizer {tokenizer.name} has {vocab}; import "
            f"it again with experiments.convert --overwrite and {fix}"
        )
    if cfg.vocab_size < vocab:
        raise checkpoints.CheckpointError(
            f"tokenizer {tokenizer.name} has {vocab} ids but the model's vocab_size is "
            f"{cfg.vocab_size}; pass the --config the model was trained with"
        )


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
    progress: Callable[[str, int, int], None] | None = None,
) -> list[perplexity.PerplexityResult]:
    """Every requested protocol on a split (None: those of `plan_protocols`; a string: one name,
    or several with commas); `max_tokens` > 0 evaluates only its first tokens;
    `progress(protocol, done, total)` after each batch."""
    protocols = protocol_list(protocols)
    check_evaluate_args(window=window, stride=stride, paper_stride=paper_stride,
                        batch_size=batch_size, max_tokens=max_tokens, protocols=protocols,
                        prefix="")  # fmt: skip
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
        chars = len(splits[split]) if split in splits else (s.data.num_chars or {}).get(split)
        units = {
            "num_bytes": s.data.num_bytes[split],
            "num_chars": chars,
            "num_words": s.data.words[split],
        }
    pad = max(s.data.tokenizer.pad_id, 0)
    results = []
    protocols, _ = plan_protocols(s, split, protocols, window, max_tokens)
    for protocol in protocols:  # every one checked before any runs
        problem = perplexity.protocol_problem(s.config, protocol, window, len(tokens))
        if problem:
            raise EvaluationError(problem)
    for protocol in protocols:
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
                progress=None if progress is None else functools.partial(progress, protocol),
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
            f"{r.num_targets:,} | {r.loss:.4f} | {perplexity_text(r.perplexity)} | {r.bits_per_token:.4f} | "
            f"{_fmt(r.bits_per_byte, '.4f')} | {_fmt(r.bits_per_char, '.4f')} | "
            f"{perplexity_text(r.word_perplexity)} |"
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
    paths.write_text(path, strict_json.dumps(report, indent=2) + "\n")


def sample(s: Setup, prompt: str, **settings) -> list[str]:
    """Continuations of `prompt` (decoded text, prompt included), one per sample; an empty
    prompt is the first words of the validation text. `settings`: `sample_stream`'s (a sample
    ends with its document unless stop_id says otherwise)."""
    prompt_BxP, blocks = sample_stream(s, prompt, **settings, whole=True)
    out = np.concatenate([prompt_BxP, *blocks], axis=1)
    return [s.data.tokenizer.decode(row) for row in out]


def sample_stream(
    s: Setup,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    num_samples: int = 1,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_id: int | None | str = "document_end",
    method: str = "auto",
    slide: int | None = None,
    whole: bool = False,
) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """The prompt's ids [num_samples, P] and the new tokens as blocks [num_samples, k] as they
    are generated (`sampling.generate_stream`; `whole`: one block, one compiled call).

    stop_id: a sample stops at this token ('document_end', the default: the end-of-document
    token where the run's data ends every document with one, as `experiments.sample` does;
    None: never, running on into the next document)."""
    if isinstance(stop_id, str):
        if stop_id != "document_end":
            raise EvaluationError(f"stop_id={stop_id!r}: give a token id, 'document_end' or None")
        stop_id = sample_settings.document_end(s.data)
    sample_settings.check_sampling(num_new=max_new_tokens, temperature=temperature, top_k=top_k,
                                   top_p=top_p, num_samples=num_samples, stop_id=stop_id,
                                   seed=seed, vocab_size=s.config.vocab_size,
                                   new_name="max_new_tokens")  # fmt: skip
    if not isinstance(prompt, str):
        raise EvaluationError(f"prompt must be text (a str), not a {type(prompt).__name__}; for "
                              "several prompts, sample each in its own call")  # fmt: skip
    ids = np.asarray(s.data.tokenizer.encode(prompt or s.data.opening_words()), np.int32)
    if ids.size == 0:
        raise EvaluationError("the prompt encodes to no tokens; give a non-empty --prompt")
    prompt_BxP = np.repeat(ids[None], num_samples, axis=0)
    settings = dict(method=method, temperature=temperature, top_k=top_k, top_p=top_p,
                    stop_id=stop_id, pad_id=max(s.data.tokenizer.pad_id, 0), slide=slide)  # fmt: skip
    rng = seed_key(seed)
    if whole:
        out = sampling.generate(s.model, prompt_BxP, max_new_tokens, rng, **settings)
        return prompt_BxP, iter([np.asarray(out)[:, ids.size :]])
    return prompt_BxP, sampling.generate_stream(s.model, prompt_BxP, max_new_tokens, rng,
                                                **settings)  # fmt: skip
