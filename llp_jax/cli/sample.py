"""Samples continuations of a prompt from a trained model.

  python -m experiments.sample --workdir=workdir/demo --prompt="It is a truth" \
      --max_new_tokens=400 --temperature=0.8 --top_k=40
  python -m experiments.sample --workdir=workdir/demo --prompt_file=chapter1.txt   # or - (stdin)
  python -m experiments.sample --workdir=workdir/demo --step=200   # an earlier checkpoint

A long prompt (a chapter, for a model whose context is the point) goes in a file: a shell
argument holds at most 128 KiB, and `--prompt="$(cat f)"` past that fails before Python starts.

The decoder is the model's cached one where it has one (llp: the streaming segment cache, which
runs past n indefinitely; transformer: KV cache; perceiver_ar: the latent-block cache), else
(enhanced_v1..v3) recomputing the window; --method=recompute forces the latter.

A sample ends at the end-of-document token where the run's data ends every document with one
(data.document_boundaries='eod', the default): a model trained on many short documents (chats,
reviews) writes one and stops, marked `[end of document]`, instead of running on into the next,
unseparated (--stop_id names another token; --stop_id=-1 never stops).

A single sample is printed as it is generated (several: a progress bar, then each sample), its
text exactly the decoded whole (`text_stream.py`); Ctrl-C ends it at once, keeping what was
printed. Samples are printed with control characters other than newline and tab escaped
('\\x1b'): an undertrained byte model emits arbitrary bytes, which would otherwise drive the
terminal. `llp_jax.generate` returns the exact token ids, `llp_jax.generate_stream` the same
ids block by block.
"""

import os

import numpy as np
import tqdm
from absl import flags
from ml_collections import config_flags

from llp_jax import paths
from llp_jax.cli import common
from llp_jax.data import read_text_file
from llp_jax.data.text_bytes import NotText
from llp_jax.evaluation import runner, sample_settings
from llp_jax.evaluation.text_stream import TextStream

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config (data settings; no workdir: an untrained model)."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir (its newest checkpoint).")
_STEP = common.count_flag(
    "step", None, "Sample from this checkpoint step, not the newest.", lower_bound=None
)
_PROMPT = flags.DEFINE_string(
    "prompt", "", "Prompt text ('' = the first words of the workdir's validation text)."
)
_PROMPT_FILE = flags.DEFINE_string(
    "prompt_file", None, "Read the prompt from this file ('-': standard input; compressed and "
    "UTF-16 files too), its trailing newlines dropped as $(cat FILE) drops them.",
)  # fmt: skip
_ALLOW = flags.DEFINE_bool(
    "allow_data_change", False, "Use a --config data section other than the workdir's."
)
_MAX_NEW = common.count_flag("max_new_tokens", 200, "Tokens to generate.", lower_bound=None)
_NUM = common.count_flag("num_samples", 1, "Continuations to draw (one batch).", lower_bound=None)
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "0 = greedy.")
_TOP_K = common.count_flag("top_k", 0, "Keep the k most likely tokens (0 = all).", lower_bound=None)
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus mass (1 = all).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_STOP_ID = common.count_flag(
    "stop_id",
    None,
    "Stop a sample at this token id (default: the end-of-document token where "
    "the run's data ends each document with one; -1: never).",
    lower_bound=None,
)
_METHOD = flags.DEFINE_enum("method", "auto", ["auto", "cached", "recompute"], "Decoder.")
_SLIDE = common.count_flag(
    "slide", None, "perceiver_ar: window advance when full (default l).", lower_bound=None
)


def main(argv):
    common.start(argv)
    with common.one_line_errors():
        # Every argument checked before anything loads; the vocabulary bounds once it has.
        stop_id = None if _STOP_ID.value == -1 else _STOP_ID.value
        check = dict(num_new=_MAX_NEW.value, temperature=_TEMPERATURE.value, top_k=_TOP_K.value,
                     top_p=_TOP_P.value, num_samples=_NUM.value, stop_id=stop_id, seed=_SEED.value,
                     prefix="--")  # fmt: skip
        sample_settings.check_sampling(**check)
        if _SLIDE.value is not None and _SLIDE.value < 1:
            raise runner.EvaluationError(f"--slide={_SLIDE.value} must be >= 1")
        if _STEP.value is not None and _STEP.value < 0:
            raise runner.EvaluationError(f"--step={_STEP.value} must be >= 0")
        prompt = _prompt()
        setup = runner.setup(_WORKDIR.value, _CONFIG.value, step=_STEP.value,
                             allow_data_change=_ALLOW.value)  # fmt: skip
        sample_settings.check_sampling(**check, vocab_size=setup.config.vocab_size)
        if _STOP_ID.value is None:
            stop_id = sample_settings.document_end(setup.data)
        prompt_BxP, blocks = runner.sample_stream(
            setup,
            prompt,
            max_new_tokens=_MAX_NEW.value,
            num_samples=_NUM.value,
            temperature=_TEMPERATURE.value,
            top_k=_TOP_K.value,
            top_p=_TOP_P.value,
            seed=_SEED.value,
            stop_id=stop_id,
            method=_METHOD.value,
            slide=_SLIDE.value,
        )
        print(f"{setup.config.name} ({setup.source})", flush=True)
        _print_samples(setup.data.tokenizer, prompt_BxP, blocks, _MAX_NEW.value, stop_id)


def _prompt() -> str:
    """--prompt, or the text of --prompt_file (read before the model loads)."""
    if _PROMPT_FILE.value is None:
        return _PROMPT.value
    path = _PROMPT_FILE.value
    if _PROMPT.value:
        raise runner.EvaluationError("give --prompt or --prompt_file, not both")
    local = path != "-" and not paths.is_url(path)  # (a pipe, bash's <(zcat p.gz), is read once)
    if local and (os.path.isdir(path) or not os.path.exists(path)):
        why = "is a folder" if os.path.isdir(path) else paths.missing(path)
        raise runner.EvaluationError(f"--prompt_file={path} {why}; give a text file, or '-'")
    if paths.is_url(path) and not paths.resolve(path).is_file():
        why = "is a folder" if paths.exists(path) else "does not exist"
        raise runner.EvaluationError(f"--prompt_file={path} {why}; give a text file, or '-'")
    try:
        text = read_text_file(path, once=True)
    except NotText as e:  # empty, binary, or a PDF, an EPUB book, ...
        if e.what:
            raise runner.EvaluationError(f"--prompt_file={path} is {e.what}") from None
        text = ""
    if not text.strip():
        raise runner.EvaluationError(f"--prompt_file={path} holds no text (empty or binary); "
                                     "write the prompt in it, or give --prompt")  # fmt: skip
    return text.rstrip("\n")


def _print_samples(tokenizer, prompt_BxP, blocks, total: int, stop_id: int | None) -> None:
    """One sample is printed as it grows; several as a progress bar, then each in turn. On
    Ctrl-C, what was generated is printed before the program ends."""
    texts = [_Sample(tokenizer, stop_id) for _ in prompt_BxP]
    shown = [sample_settings.shown(t.feed(row)) for t, row in zip(texts, prompt_BxP)]
    if len(texts) == 1:
        print(f"--- sample 0\n{shown[0]}", end="", flush=True)
        try:
            for block_BxK in blocks:
                print(sample_settings.shown(texts[0].feed(block_BxK[0])), end="", flush=True)
        finally:  # an error's line, too, starts on a line of its own
            print(sample_settings.shown(texts[0].finish()), flush=True)
        return
    made = 0
    try:
        with tqdm.tqdm(desc="sample", total=total, unit=" tok", dynamic_ncols=True) as bar:
            for block_BxK in blocks:
                for i, (t, row) in enumerate(zip(texts, block_BxK)):
                    shown[i] += sample_settings.shown(t.feed(row))
                bar.update(block_BxK.shape[1])
                made += block_BxK.shape[1]
    except KeyboardInterrupt:
        if made:
            _print_all(shown, texts)
        raise
    _print_all(shown, texts)


class _Sample(TextStream):
    """A sample's text, and whether it reached the stop token (then `finish` marks its end)."""

    def __init__(self, tokenizer, stop_id: int | None):
        super().__init__(tokenizer)
        self._stop_id, self._stopped = stop_id, False

    def feed(self, ids) -> str:
        if self._stop_id is not None and not self._stopped:
            self._stopped = bool((np.asarray(ids) == self._stop_id).any())
        return super().feed(ids)

    def finish(self) -> str:
        end = f"\n{sample_settings.END_OF_DOCUMENT}" if self._stopped else ""
        return super().finish() + end


def _print_all(shown: list[str], texts: list[TextStream]) -> None:
    for i, (text, t) in enumerate(zip(shown, texts)):
        print(f"--- sample {i}\n{text}{sample_settings.shown(t.finish())}", flush=True)


def entry():
    """The `llp-sample` console script."""
    common.run(main)


if __name__ == "__main__":
    entry()
