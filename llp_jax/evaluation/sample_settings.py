"""What a caller may ask of sampling, and the checks on it: `SampleConfig` (a training run's
`config.sample` section) and `check_sampling` (the arguments of `generate` and
`experiments.sample`), kept apart from the generation loops they govern; and `shown`, how a
sample is printed."""

from __future__ import annotations

import dataclasses
import numbers
import re
from typing import Any

from llp_jax import schema
from llp_jax.evaluation.errors import EvaluationError
from llp_jax.models.inputs import check_seed


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """`config.sample`: the end-of-run sample of a training run.

    Attributes:
      prompt: the text continued ('' = the first words of the validation text).
      num_tokens: tokens generated (0 = no sample).
      temperature: 0 = greedy.
      top_k: keep the k most likely tokens (0 = all).
      top_p: nucleus mass in (0, 1] (1 = all).
      seed: sampling seed.
    """

    prompt: str = ""
    num_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 1.0
    seed: int = 0

    @classmethod
    def from_any(cls, config: Any) -> SampleConfig:
        return schema.from_any(cls, config, "sample")

    def validate(self) -> SampleConfig:
        check = schema.Checker("sample", self)
        for field in ("num_tokens", "temperature", "top_k"):
            check.at_least(field, 0)
        check.seed("seed")
        check(0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]")
        return self


def check_sampling(*, num_new: int, temperature: float, top_k: int, top_p: float,
                   num_samples: int = 1, stop_id: int | None = None, seed: int = 0,
                   vocab_size: int | None = None, prefix: str = "",
                   new_name: str | None = None) -> None:  # fmt: skip
    """One-line EvaluationError for sampling arguments outside their range (`prefix` '--'
    names them as flags; `new_name` is the caller's name of `num_new`); the vocabulary bounds
    are checked once `vocab_size` is known."""

    def bad(name: str, value, constraint: str) -> EvaluationError:
        return EvaluationError(f"{prefix}{name}={value!r} {constraint}")

    new_name = new_name or ("max_new_tokens" if prefix else "num_new")
    ints = {new_name: num_new, "num_samples": num_samples, "top_k": top_k, "seed": seed}
    if stop_id is not None:
        ints["stop_id"] = stop_id
    for name, value in (*ints.items(), ("temperature", temperature), ("top_p", top_p)):
        kind = numbers.Integral if name in ints else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            raise bad(name, value, "must be an int" if name in ints else "must be a number")
    check_seed(seed, name=f"{prefix}seed")
    for name, value in ((new_name, num_new), ("num_samples", num_samples)):
        if not 1 <= value < 2**31:  # positions and rows count in int32 (past it: a traceback)
            raise bad(name, value, "must be >= 1" if value < 1 else "must be below 2**31")
    if not temperature >= 0 or temperature == float("inf"):
        raise bad("temperature", temperature, "must be a number >= 0 (0 = greedy)")
    if not 0 < top_p <= 1:
        raise bad("top_p", top_p, "must be in (0, 1] (1 = every token)")
    if not top_k >= 0:
        raise bad("top_k", top_k, "must be >= 0 (0 = every token)")
    if vocab_size is not None and top_k > vocab_size:
        raise bad("top_k", top_k, f"must be <= the vocabulary size {vocab_size} (0 = every token)")
    if stop_id is not None and not (0 <= stop_id and (vocab_size is None or stop_id < vocab_size)):
        limit = f"{vocab_size - 1}" if vocab_size is not None else "the vocabulary size - 1"
        raise bad("stop_id", stop_id, f"must be a token id in [0, {limit}]")


# C0 and C1 control characters but newline and tab, and the bidirectional overrides and
# isolates (which reorder what follows them on screen).
_UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """`text` safe to print to a terminal: control characters other than newline and tab are
    written as escapes ('\\x1b', '\\u202e'), and Windows newlines as '\\n'.

    Why: a byte-level model early in training samples arbitrary bytes, and a prompt may hold
    anything. Printed raw, an ESC starts a terminal escape sequence, SO (0x0e) switches some
    terminals to line-drawing glyphs until reset, and a bidi override reverses the rest of the
    line: one sample can garble the user's terminal. The token ids (`generate`) stay exact.
    """
    text = text.replace("\r\n", "\n")
    return _UNSHOWN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


END_OF_DOCUMENT = "[end of document]"  # printed where a sample reached the token


def document_end(data) -> int | None:
    """The token a sample stops at by default (`data`: a Datasets): the end-of-document token,
    where the run's data put one after every document (data.document_boundaries='eod'). A model
    trained on many short documents (chats, reviews) then writes one and stops, instead of
    running on into the next, unseparated."""
    eod = data.tokenizer.eod_id
    return eod if data.data_config.document_boundaries == "eod" and eod >= 0 else None
