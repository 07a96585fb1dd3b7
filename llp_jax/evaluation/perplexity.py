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
import functools
import math

import jax
import numpy as np
import optax
from flax import nnx

from llp_jax.evaluation.errors import EvaluationError

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
        perplexity=math.exp(loss),
        bits_per_token=loss / math.log(2),
        bits_per_byte=None if nats_byte is None else nats_byte / math.log(2),
        bits_per_char=None if nats_char is None else nats_char / math.log(2),
        word_perplexity=None if nats_word is None else math.exp(nats_word),
        token_nll=token_nll,
    )


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _window_nll(graphdef, params, inputs_BxT, targets_BxQ):
    """NLL of the model's scored positions of each window: [B, Q] (Q = T - loss_start(T))."""
    logits_BxQxV = nnx.merge(graphdef, params)(inputs_BxT)
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxQxV, targets_BxQ)


@dataclasses.dataclass(frozen=True)
class StandardPlan:
    """Where the standard protocol's windows lie, in the left-padded stream u = [pads ; tokens].

    Window k has inputs u[ends[k] - n : ends[k]] and targets u[ends[k] - n + 1 : ends[k] + 1];
    the model scores its last Q targets, of which those at padded index >= first_new[k] count.
    """

    pad: int
    window: int
    scored: int
    ends: np.ndarray
    first_new: np.ndarray


def plan_standard(N: int, window: int, stride: int, loss_start_fn) -> StandardPlan:
    """Windows of the standard protocol for a stream of N tokens (see the module docstring).

    Args:
      N: stream length (>= 2).
      window: n.
      stride: tokens between window ends (1 <= stride <= scored positions per window).
      loss_start_fn: T -> index of the first scored position of a window of T (the model's).

    Raises:
      EvaluationError: stride out of range, or fewer than 2 tokens (one line).
    """
    if N < 2:
        raise EvaluationError(f"the stream has {N} token(s); perplexity needs at least 2")
    off = loss_start_fn(window)
    if off == 0:
        # Models scoring every position need no padding; a short stream gets one short window.
        pad, n = 0, min(window, N - 1)
    else:
        pad, n = max(off, window + 1 - N), window
    Q = n - loss_start_fn(n)
    last = N - 1 + pad  # padded index of the last target
    if last > n and not 1 <= stride <= Q:  # (one window scores everything: stride is moot)
        raise EvaluationError(
            f"stride={stride} must be in [1, {Q}] (the positions a window of {n} scores), or "
            "some targets would never be scored"
        )
    ends = [n]
    while ends[-1] < last:
        ends.append(min(ends[-1] + stride, last))
    ends = np.asarray(ends, np.int64)
    first_new = np.maximum(np.concatenate([[0], ends[:-1]]), pad) + 1
    return StandardPlan(pad=pad, window=n, scored=Q, ends=ends, first_new=first_new)


def _batches(count: int, batch_size: int):
    for i in range(0, count, batch_size):
        yield np.arange(i, min(i + batch_size, count))


def standard_nll(
    model, tokens_N: np.ndarray, *, window: int, stride: int, batch_size: int = 8, pad_id: int = 0
):
    """Per-target NLL under the standard protocol: (nll_{N-1} for t_1..t_{N-1}, plan)."""
    model = model.for_inference()
    tokens_N = np.asarray(tokens_N, np.int32)
    N = len(tokens_N)
    plan = plan_standard(N, window, stride, model.loss_start)
    u = np.concatenate([np.full(plan.pad, pad_id, np.int32), tokens_N])
    n, Q = plan.window, plan.scored
    graphdef, params = nnx.split(model)
    nll = np.full(N - 1, np.nan)
    K = len(plan.ends)
    for idx in _batches(K, batch_size):
        ends = plan.ends[idx]
        rows = np.concatenate([idx, np.full(batch_size - len(idx), idx[-1])])  # static batch shape
        starts = plan.ends[rows] - n
        inputs = np.stack([u[s : s + n] for s in starts])
        targets = np.stack([u[s + n - Q + 1 : s + n + 1] for s in starts])
        out_BxQ = np.asarray(_window_nll(graphdef, params, inputs, targets))[: len(idx)]
        for row, (end, new) in enumerate(zip(ends, plan.first_new[idx])):
            target_idx = np.arange(end - Q + 1, end + 1)  # padded indices of the scored targets
            keep = target_idx >= new
            nll[target_idx[keep] - plan.pad - 1] = out_BxQ[row, keep]
    return nll, plan


def paper_window_losses(
    model, tokens_N: np.ndarray, *, window: int, stride: int, batch_size: int = 8
):
    """The authors' protocol: mean loss of each window of n + 1 tokens starting every `stride`.

    Returns (window means [K], starts [K], scored positions per window Q).
    """
    model = model.for_inference()
    tokens_N = np.asarray(tokens_N, np.int32)
    N, n = len(tokens_N), window
    if N < n + 1:
        raise EvaluationError(
            f"the stream has {N} tokens, fewer than one window of n + 1 = {n + 1}"
        )
    starts = np.arange(0, N - n, stride)
    Q = n - model.loss_start(n)
    graphdef, params = nnx.split(model)
    means = []
    for idx in _batches(len(starts), batch_size):
        rows = np.concatenate([idx, np.full(batch_size - len(idx), idx[-1])])
        w = np.stack([tokens_N[s : s + n + 1] for s in starts[rows]])
        out_BxQ = np.asarray(_window_nll(graphdef, params, w[:, :-1], w[:, n - Q + 1 :]))
        means.extend(out_BxQ[: len(idx)].mean(axis=1).tolist())
    return np.asarray(means), starts, Q


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _stream_chunk(graphdef, params, inputs_1xC, targets_1xC, state):
    logits_1xCxV, state = nnx.merge(graphdef, params).stream(inputs_1xC, state)
    return optax.softmax_cross_entropy_with_integer_labels(logits_1xCxV, targets_1xC), state


def stream_nll(model, tokens_N: np.ndarray, *, chunk: int | None = None, pad_id: int = 0):
    """Per-target NLL of LLP's scan form over the whole stream, cache carried across chunks."""
    model, cfg = model.for_inference(), model.cfg
    if not model.can_stream:
        raise EvaluationError(
            f"the 'stream' protocol needs a model with a streaming form (llp), not {cfg.name}"
        )
    chunk = chunk or cfg.seq_len
    if chunk % cfg.segment_len:
        raise EvaluationError(f"chunk={chunk} must be a multiple of segment_len={cfg.segment_len}")
    tokens_N = np.asarray(tokens_N, np.int32)
    N = len(tokens_N)
    if N < 2:
        raise EvaluationError(f"the stream has {N} token(s); perplexity needs at least 2")
    num = -(-(N - 1) // chunk)
    size = num * chunk
    inputs = np.full(size, pad_id, np.int32)  # trailing pads: causal, they change nothing before
    targets = np.zeros(size, np.int32)
    inputs[: N - 1], targets[: N - 1] = tokens_N[:-1], tokens_N[1:]
    graphdef, params = nnx.split(model)
    state = model.init_stream(1)
    out = []
    for i in range(num):
        piece = slice(i * chunk, (i + 1) * chunk)
        nll, state = _stream_chunk(
            graphdef, params, inputs[None, piece], targets[None, piece], state
        )
        out.append(np.asarray(nll[0]))
    return np.concatenate(out)[: N - 1], num, chunk


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
) -> PerplexityResult:
    """Perplexity of `model` on the token stream `tokens_N` under `protocol`.

    Args:
      model: a zoo model (evaluated deterministically as `model.for_inference()`, jit on the
        default device).
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
    """
    cfg = model.cfg
    n = window or cfg.seq_len
    N = len(tokens_N)
    units = {"num_bytes": num_bytes, "num_chars": num_chars, "num_words": num_words}
    if protocol == "standard":
        if stride is None:
            stride = min(n // 2, cfg.latent_len) if cfg.scores_latents else max(n // 2, 1)
        nll, plan = standard_nll(
            model, tokens_N, window=n, stride=stride, batch_size=batch_size, pad_id=pad_id
        )
        assert not np.isnan(nll).any(), "the standard protocol left a target unscored"
        total = float(nll.sum())
        return _finish(
            "standard",
            plan.window,
            stride,
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
        means, starts, Q = paper_window_losses(
            model, tokens_N, window=n, stride=stride, batch_size=batch_size
        )
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
        nll, num, chunk = stream_nll(model, tokens_N, chunk=window, pad_id=pad_id)
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
    raise EvaluationError(f"protocol={protocol!r} must be one of {PROTOCOLS}")
