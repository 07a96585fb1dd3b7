"""How each perplexity protocol runs the model over a token stream (`evaluation.perplexity`).

'standard' plans its windows (`plan_standard`: where each lies in the left-padded stream, which
of its targets are new) and returns one NLL per target; 'paper' returns each window's mean loss;
'stream' carries LLP's segment cache across chunks of the whole stream. `perplexity` turns
these into the figures and explains the protocols.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import numpy as np
import optax
from flax import nnx

from llp_jax.evaluation.errors import EvaluationError

Progress = Callable[[int, int], None]  # (windows or chunks done, of how many)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def window_nll(graphdef, params, inputs_BxT, targets_BxQ):
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


def _batches(count: int, batch_size: int, progress: Progress | None = None):
    """(window indices, rows) a batch at a time: the rows repeat the batch's last window up to
    one static batch shape, never more rows than there are windows (a batch_size of 8 on a
    text of 2 windows ran 8). `progress(done, total)` after each batch (a long evaluation says
    how far it is: `experiments.evaluate`'s bar)."""
    batch_size = min(batch_size, count)
    for i in range(0, count, batch_size):
        idx = np.arange(i, min(i + batch_size, count))
        yield idx, np.concatenate([idx, np.full(batch_size - len(idx), idx[-1])])
        if progress is not None:
            progress(min(i + batch_size, count), count)


def standard_nll(model, tokens_N: np.ndarray, *, window: int, stride: int, batch_size: int = 8,
                 pad_id: int = 0, progress: Progress | None = None):  # fmt: skip
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
    for idx, rows in _batches(K, batch_size, progress):
        ends = plan.ends[idx]
        starts = plan.ends[rows] - n
        inputs = np.stack([u[s : s + n] for s in starts])
        targets = np.stack([u[s + n - Q + 1 : s + n + 1] for s in starts])
        out_BxQ = np.asarray(window_nll(graphdef, params, inputs, targets))[: len(idx)]
        for row, (end, new) in enumerate(zip(ends, plan.first_new[idx])):
            target_idx = np.arange(end - Q + 1, end + 1)  # padded indices of the scored targets
            keep = target_idx >= new
            nll[target_idx[keep] - plan.pad - 1] = out_BxQ[row, keep]
    return nll, plan


def paper_window_losses(model, tokens_N: np.ndarray, *, window: int, stride: int,
                        batch_size: int = 8, progress: Progress | None = None):  # fmt: skip
    """The authors' protocol: mean loss of each window of n + 1 tokens starting every `stride`.

    Returns (window means [K], starts [K], scored positions per window Q).
    """
    model = model.for_inference()
    tokens_N = np.asarray(tokens_N, np.int32)
    N, n = len(tokens_N), window
    problem = paper_problem(N, n)
    if problem:
        raise EvaluationError(problem)
    starts = np.arange(0, N - n, stride)
    Q = n - model.loss_start(n)
    graphdef, params = nnx.split(model)
    means = []
    for idx, rows in _batches(len(starts), batch_size, progress):
        w = np.stack([tokens_N[s : s + n + 1] for s in starts[rows]])
        out_BxQ = np.asarray(window_nll(graphdef, params, w[:, :-1], w[:, n - Q + 1 :]))
        means.extend(out_BxQ[: len(idx)].mean(axis=1).tolist())
    return np.asarray(means), starts, Q


def paper_problem(N: int, window: int) -> str | None:
    """Why the paper protocol cannot score N tokens with `window` (None: it can)."""
    if N >= window + 1:
        return None
    return (f"the stream has {N} tokens, fewer than one window of n + 1 = {window + 1}: give a "
            "longer text, a smaller window, or the standard protocol (it takes any length)")  # fmt: skip


def stream_problem(cfg, chunk: int) -> str | None:
    """Why the stream protocol cannot run a model of `cfg` in chunks of `chunk` (None: it can)."""
    if not cfg.model_class.can_stream:
        return f"the 'stream' protocol needs a model with a streaming form (llp), not {cfg.name}"
    if chunk % cfg.segment_len:
        return (f"window={chunk} (the stream protocol's chunk) must be a multiple of "
                f"segment_len={cfg.segment_len}")  # fmt: skip
    return None


def stream_chunk(cfg, chunk: int, N: int) -> int:
    """The chunk the stream protocol runs over N tokens: a chunk longer than the text runs the
    text, to a whole segment (a chunk of pads was allocated and run)."""
    return min(chunk, -(-(N - 1) // cfg.segment_len) * cfg.segment_len)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _stream_chunk(graphdef, params, inputs_1xC, targets_1xC, state):
    logits_1xCxV, state = nnx.merge(graphdef, params).stream(inputs_1xC, state)
    return optax.softmax_cross_entropy_with_integer_labels(logits_1xCxV, targets_1xC), state


def stream_nll(model, tokens_N: np.ndarray, *, chunk: int | None = None, pad_id: int = 0,
               progress: Progress | None = None):  # fmt: skip
    """Per-target NLL of LLP's scan form over the whole stream, cache carried across chunks."""
    model, cfg = model.for_inference(), model.cfg
    chunk = chunk or cfg.seq_len
    problem = stream_problem(cfg, chunk)
    if problem:
        raise EvaluationError(problem)
    tokens_N = np.asarray(tokens_N, np.int32)
    N = len(tokens_N)
    if N < 2:
        raise EvaluationError(f"the stream has {N} token(s); perplexity needs at least 2")
    chunk = stream_chunk(cfg, chunk, N)
    num = -(-(N - 1) // chunk)
    size = num * chunk
    inputs = np.full(size, pad_id, np.int32)  # trailing pads: causal, they change nothing before
    targets = np.zeros(size, np.int32)
    inputs[: N - 1], targets[: N - 1] = tokens_N[:-1], tokens_N[1:]
    graphdef, params = nnx.split(model)
    state = model.init_stream(1)
    out = []
    for (i,), _ in _batches(num, 1, progress):
        piece = slice(i * chunk, (i + 1) * chunk)
        nll, state = _stream_chunk(
            graphdef, params, inputs[None, piece], targets[None, piece], state
        )
        out.append(np.asarray(nll[0]))
    return np.concatenate(out)[: N - 1], num, chunk
