"""Which perplexity protocols an evaluation runs, and its arguments checked before anything is
loaded or run: `experiments.evaluate`'s flags and `runner.evaluate`'s arguments alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from llp_jax import models
from llp_jax.evaluation import perplexity
from llp_jax.evaluation.errors import EvaluationError, check_counts

if TYPE_CHECKING:
    from llp_jax.evaluation.runner import Setup


def check_evaluate_args(*, step=None, window=None, stride=None, paper_stride=None,
                        batch_size=8, max_tokens=0, protocols=None, prefix="--") -> None:  # fmt: skip
    """One-line EvaluationError for `experiments.evaluate` flags (prefix '--'), or `evaluate`'s
    arguments (prefix ''), outside their range, before anything is loaded or run (the bounds
    that depend on the model are checked by the protocols)."""
    check_counts((("step", step, 0), ("window", window, 2), ("stride", stride, 1),
                  ("paper_stride", paper_stride, 1), ("batch_size", batch_size, 1),
                  ("max_tokens", max_tokens, 0)), prefix=prefix)  # fmt: skip
    unknown = sorted(set(protocols or ()) - set(perplexity.PROTOCOLS))
    if unknown:
        raise EvaluationError(f"{prefix}protocols: {unknown} unknown; choose from "
                              f"{perplexity.PROTOCOLS}")  # fmt: skip


def protocol_list(protocols: str | Sequence[str] | None) -> list[str] | None:
    """`protocols` as a list: a string is one name or several with commas, as the flag takes
    them ('standard,paper'; iterated, it was its letters, "protocol='s'")."""
    if isinstance(protocols, str):
        return [p.strip() for p in protocols.split(",") if p.strip()]
    return None if protocols is None else list(protocols)


def default_protocols(cfg: models.ModelConfig) -> list[str]:
    """Every protocol that applies: 'stream' where the model has a streaming form."""
    return ["standard", "paper"] + (["stream"] if cfg.model_class.can_stream else [])


def plan_protocols(
    s: Setup, split: str, protocols: Sequence[str] | None = None, window: int | None = None,
    max_tokens: int = 0,
) -> tuple[list[str], list[str]]:  # fmt: skip
    """The protocols `evaluate` runs, and a note for each default one it leaves out. The paper
    protocol needs one window of n + 1 tokens; on a shorter text (a paragraph given with --text)
    the standard and stream protocols, which take any length, score it whole. Asked for by
    name, the paper protocol is an error there."""
    if protocols:
        return list(protocols), []
    chosen = default_protocols(s.config)
    N = len(s.data.eval_tokens(split))
    N = min(N, max_tokens) if max_tokens else N
    n = window or s.config.seq_len
    if N >= n + 1:
        return chosen, []
    chosen.remove("paper")
    return chosen, [f"the paper protocol is left out: the text has {N:,} tokens, fewer than one "
                    f"of its windows (n + 1 = {n + 1:,})"]  # fmt: skip
