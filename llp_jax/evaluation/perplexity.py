"""Perplexity of a whole token stream under three protocols, with per-word and per-byte figures.

  * 'standard' (default; Hugging Face's "stride" recipe): windows of n tokens advance by `stride`
    and each scores only the targets no earlier window scored, so every target t_1..t_{N-1} is
    counted exactly once, with n - stride + 1 to n tokens of context (the first window: 1..n).
    Models that score only their last l positions (perceiver_ar, enhanced_v1..v3) need
    stride <= l; the stream is left-padded with n - l pad tokens (`pad_id`) so that the first
    target, t_1, falls in the first window's scored block: those early targets see pads (tokens
    the model never trained on) where a longer text would have history. V3 requires windows of
    exactly n, so the padding is what makes every target scorable.
  * 'paper' (the authors' protocol): windows of n + 1 tokens every `stride` (default n / 2), the
    mean loss of each window over its loss positions, exp of the mean of those means. Targets in
    overlapping windows are counted twice for models that score every position (llp), and the
    tail after the last full window is dropped.
  * 'stream' (llp only): the whole stream through LLP's scan form (`model.stream`) in chunks,
    the segment cache carried across chunks, so context is unbounded (each position still sees
    k * L segments back by construction) and every target is counted once.

Token perplexity is exp(mean NLL per scored target). For comparisons across tokenizers the NLL
is also expressed per unit of text: bits per byte (any tokenizer; for byte tokens it is bits per
token), bits per character, and word-level perplexity exp(NLL / words), where the stream's total
NLL is mean NLL x N tokens (t_0, which nothing predicts, is charged the average).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from llp_jax.backend import memory_fix
from llp_jax.evaluation.errors import EvaluationError, check_counts
from llp_jax.evaluation.protocols import (
    paper_problem,
    paper_window_losses,
    standard_nll,
    stream_chunk,
    stream_nll,
    stream_problem,
)
from llp_jax.models.inputs import as_model, as_tokens
from llp_jax.models.losses import perplexity

PROTOCOLS = ("standard", "paper", "stream")


@dataclasses.dataclass
class PerplexityResult:
    """One protocol's figures. `loss` is nats per scored target (paper: the mean of window means).

    Attributes:
      protocol, window, stride: how it was measured (stream: window = chunk length).
      num_windows: windows (stream: chunks) run.
      num_scored: scored targets, repeats included.
      num_targets: distinct targets scored (standard / stream: stream_len - 1).
      stream_len: N, tokens in the evaluated stream.
      nll_sum: total NLL in nats over the scored targets (repeats included).
      token_nll: per-target NLL, token_nll[j - 1] for target t_j (NaN: not scored); standard and
        stream only, and only when asked for.
    """

    protocol: str
    window: int
    stride: int
    num_windows: int
    num_scored: int
    num_targets: int
    stream_len: int
    nll_sum: float
    loss: float
    perplexity: float
    bits_per_token: float
    bits_per_byte: float | None = None
    bits_per_char: float | None = None
    word_perplexity: float | None = None
    token_nll: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "token_nll"}


def _finish(
    protocol,
    window,
    stride,
    num_windows,
    nll_sum,
    num_scored,
    num_targets,
    N,
    loss,
    num_bytes,
    num_chars,
    num_words,
    token_nll,
) -> PerplexityResult:
    per_unit = lambda units: loss * N / units if units else None
    nats_byte, nats_char, nats_word = per_unit(num_bytes), per_unit(num_chars), per_unit(num_words)
    return PerplexityResult(
        protocol=protocol,
        window=window,
        stride=stride,
        num_windows=num_windows,
        num_scored=int(num_scored),
        num_targets=int(num_targets),
        stream_len=N,
        nll_sum=float(nll_sum),
        loss=float(loss),
        perplexity=perplexity(loss),
        bits_per_token=loss / math.log(2),
        bits_per_byte=None if nats_byte is None else nats_byte / math.log(2),
        bits_per_char=None if nats_char is None else nats_char / math.log(2),
        word_perplexity=None if nats_word is None else perplexity(nats_word),
        token_nll=token_nll,
    )


def _fewer_windows(batch_size: int, window: int) -> str:
    return f"lower batch_size={batch_size} (windows of {window} tokens per forward pass)"


def protocol_problem(cfg, protocol: str, window: int | None, num_tokens: int) -> str | None:
    """Why `protocol` cannot score `num_tokens` tokens of a model of `cfg` in windows of `window`
    (None: the model's n), known before any scoring (None: it can). `experiments.evaluate` asks
    for every protocol first: a window that one of them cannot use fails at once, not after the
    protocols before it have run."""
    if protocol not in PROTOCOLS:
        return f"protocol={protocol!r} must be one of {PROTOCOLS}"
    n = window or cfg.seq_len
    if protocol == "stream":
        return stream_problem(cfg, n)
    problem = cfg.model_class.window_problem(cfg, n)
    return problem or (paper_problem(num_tokens, n) if protocol == "paper" else None)


def evaluate_perplexity(
    model,
    tokens_N: np.ndarray,
    *,
    protocol: str = "standard",
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    pad_id: int = 0,
    num_bytes: int | None = None,
    num_chars: int | None = None,
    num_words: int | None = None,
    keep_token_nll: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PerplexityResult:
    """Perplexity of `model` on the token stream `tokens_N` under `protocol`.

    Args:
      model: a zoo model, or `load_model`'s result (evaluated deterministically as
        `model.for_inference()`, jit on the default device).
      tokens_N: the whole stream of a split, int[N].
      protocol: 'standard', 'paper' or 'stream' (see the module docstring).
      window: n (default model.cfg.seq_len; models with `fixed_window` accept only that). Stream: chunk length.
      stride: standard default min(n / 2, l) for latent models, n / 2 otherwise; paper default
        n / 2.
      batch_size: windows per forward pass (the last batch is padded to keep one compiled shape).
      pad_id: padding token (standard protocol's left padding for latent models; stream's tail).
      num_bytes, num_chars, num_words: size of the text the stream encodes, for bits per
        byte / character and word-level perplexity (None: not reported).
      keep_token_nll: return the per-target NLL (standard and stream).
      progress: called as `progress(done, total)` after each batch of windows (stream: each
        chunk), e.g. to move a progress bar.
    """
    model = as_model(model)
    cfg = model.cfg
    tokens_N = np.asarray(as_tokens(tokens_N, cfg.vocab_size, what="tokens_N", rank=1))
    check_counts((("batch_size", batch_size, 1), ("window", window, 2), ("stride", stride, 1)),
                 default=" (None: the protocol's default)", required=("batch_size",))  # fmt: skip
    n = window or cfg.seq_len
    N = len(tokens_N)
    problem = protocol_problem(cfg, protocol, window, N)
    if problem:
        raise EvaluationError(problem)
    units = {"num_bytes": num_bytes, "num_chars": num_chars, "num_words": num_words}
    if protocol == "standard":
        if stride is None:
            stride = min(n // 2, cfg.latent_len) if cfg.scores_latents else max(n // 2, 1)
        with memory_fix(_fewer_windows(batch_size, n)):
            nll, plan = standard_nll(
                model, tokens_N, window=n, stride=stride, batch_size=batch_size, pad_id=pad_id,
                progress=progress,
            )  # fmt: skip
        assert not np.isnan(nll).any(), "the standard protocol left a target unscored"
        total = float(nll.sum())
        return _finish(
            "standard",
            plan.window,
            min(stride, plan.window),  # a window longer than the text: one window, no stride
            len(plan.ends),
            total,
            N - 1,
            N - 1,
            N,
            total / (N - 1),
            **units,
            token_nll=nll if keep_token_nll else None,
        )
    if protocol == "paper":
        stride = stride or max(n // 2, 1)
        with memory_fix(_fewer_windows(batch_size, n)):
            means, starts, Q = paper_window_losses(
                model, tokens_N, window=n, stride=stride, batch_size=batch_size,
                progress=progress,
            )  # fmt: skip
        covered = np.zeros(N, bool)
        for s in starts:
            covered[s + n - Q + 1 : s + n + 1] = True
        loss = float(means.mean())
        return _finish(
            "paper",
            n,
            stride,
            len(starts),
            float(means.sum() * Q),
            len(starts) * Q,
            covered.sum(),
            N,
            loss,
            **units,
            token_nll=None,
        )
    if protocol == "stream":
        with memory_fix(f"give a smaller window (the stream's chunk, now "
                        f"{stream_chunk(cfg, n, N)} tokens)"):  # fmt: skip
            nll, num, chunk = stream_nll(model, tokens_N, chunk=window, pad_id=pad_id,
                                         progress=progress)  # fmt: skip
        total = float(nll.sum())
        return _finish(
            "stream",
            chunk,
            chunk,
            num,
            total,
            N - 1,
            N - 1,
            N,
            total / (N - 1),
            **units,
            token_nll=nll if keep_token_nll else None,
        )
    raise AssertionError(f"unreachable: protocol_problem rejects {protocol!r}")
