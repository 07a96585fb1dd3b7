"""Perplexity of a trained model (or an untrained one from a config) under the three protocols.

  python -m experiments.evaluate --workdir=workdir/demo
  python -m experiments.evaluate --workdir=workdir/demo --split=test --protocols=standard,paper \
      --stride=64 --out=experiments/results/demo_test.json
  python -m experiments.evaluate --config=llp_jax/configs/tiny.py:perceiver_ar --max_tokens=4096

Protocols: 'standard' (every target once, longest context the window allows; the default),
'paper' (the authors': windows of n + 1 every n / 2, mean of window means), 'stream' (llp only:
the scan form over the whole stream, unbounded context). Prints a table; writes JSON to --out
(default <workdir>/eval_<split>.json when a workdir is given). On a terminal, a bar per protocol
says how far it is (a paper-size model on a long split runs for many minutes).
"""

import tqdm
from absl import flags
from ml_collections import config_flags

from llp_jax import paths
from llp_jax.cli import common
from llp_jax.errors import LLPError
from llp_jax.evaluation import protocol_plan, runner

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config: the data settings, and the model if there is no workdir."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir (its newest checkpoint).")
_STEP = common.count_flag(
    "step", None, "Evaluate this checkpoint step instead of the newest.", lower_bound=None
)
_SPLIT = flags.DEFINE_enum("split", "validation", ["train", "validation", "test"], "Split.")
_PROTOCOLS = flags.DEFINE_list(
    "protocols", None, "standard, paper, stream (default: all that apply to the model)."
)
_WINDOW = common.count_flag(
    "window", None, "Window n (default model seq_len; stream: chunk).", lower_bound=None
)
_STRIDE = common.count_flag(
    "stride", None, "Standard protocol stride (default n/2, <= l).", lower_bound=None
)
_PAPER_STRIDE = common.count_flag(
    "paper_stride", None, "Paper protocol stride (default n/2).", lower_bound=None
)
_BATCH = common.count_flag("batch_size", 8, "Windows per forward pass.", lower_bound=None)
_MAX_TOKENS = common.count_flag(
    "max_tokens", 0, "Evaluate only the first tokens (0 = all).", lower_bound=None
)
_OUT = common.output_flag("out", None, "JSON output path.")
_TEXT = flags.DEFINE_string(
    "text",
    None,
    "Evaluate this text instead (files, folders, globs, JSON Lines; '-' reads standard input, "
    "and a pipe such as <(zcat a.gz) works), tokenised with the workdir's own tokenizer; "
    "reported as split 'text'.",
)
_TEXT_FIELD = flags.DEFINE_string(
    "text_field", "text", "The JSON field or Parquet / CSV / TSV column of --text holding the text."
)
_ALLOW = flags.DEFINE_bool(
    "allow_data_change", False, "Evaluate on a --config data section other than the workdir's."
)


def main(argv):
    common.start(argv)
    with common.one_line_errors():
        protocol_plan.check_evaluate_args(
            step=_STEP.value, window=_WINDOW.value, stride=_STRIDE.value,
            paper_stride=_PAPER_STRIDE.value, batch_size=_BATCH.value,
            max_tokens=_MAX_TOKENS.value, protocols=_PROTOCOLS.value,
        )  # fmt: skip
        setup = runner.setup(_WORKDIR.value, _CONFIG.value, step=_STEP.value, text=_TEXT.value,
                             text_field=_TEXT_FIELD.value, allow_data_change=_ALLOW.value,
                             training_split=_SPLIT.value == "train")  # fmt: skip
        split = "text" if _TEXT.value else _SPLIT.value
        out = _output_path(split)  # after the workdir is known to be one
        protocols, notes = protocol_plan.plan_protocols(
            setup, split, _PROTOCOLS.value, _WINDOW.value, _MAX_TOKENS.value
        )
        with _Bars() as bars:
            results = runner.evaluate(
                setup,
                split=split,
                protocols=protocols,
                window=_WINDOW.value,
                stride=_STRIDE.value,
                paper_stride=_PAPER_STRIDE.value,
                batch_size=_BATCH.value,
                max_tokens=_MAX_TOKENS.value,
                progress=bars,
            )
    print(
        f"{setup.config.name} ({setup.source}) on {setup.data.corpus.name} {split}, "
        f"tokenizer {setup.data.tokenizer.name}"
    )
    print(runner.format_table(results))
    for note in notes:
        print(note)
    if out:
        with common.one_line_errors():
            runner.write_json(out, setup, split, results)
        print(f"wrote {out}")


class _Bars:
    """A tqdm bar per protocol on stderr, shown on a terminal only (a log gets the table), and
    gone once the protocol is done: `progress(protocol, done, total)` for `runner.evaluate`."""

    def __init__(self):
        self._bar, self._protocol = None, None

    def __call__(self, protocol: str, done: int, total: int) -> None:
        if protocol != self._protocol:
            self.__exit__()
            unit = " chunks" if protocol == "stream" else " windows"
            self._bar = tqdm.tqdm(desc=protocol, total=total, unit=unit, leave=False,
                                  dynamic_ncols=True, disable=None)  # fmt: skip
            self._protocol = protocol
        self._bar.update(done - self._bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._protocol = None, None


def _output_path(split: str) -> str | None:
    """--out, else eval_<split>.json in the workdir, checked before the evaluation's minutes:
    a workdir this user may only read (a colleague's, a read-only mount) needs --out."""
    if _OUT.value is not None or not _WORKDIR.value:
        return _OUT.value
    out = paths.join(_WORKDIR.value, f"eval_{split}.json")
    why = paths.unwritable(out)
    if why is not None:
        raise LLPError(f"the results go to {out} by default, but {why}: give --out=FILE "
                       "(--out=/dev/null keeps no file)")  # fmt: skip
    return out


def entry():
    """The `llp-evaluate` console script."""
    common.run(main)


if __name__ == "__main__":
    entry()
