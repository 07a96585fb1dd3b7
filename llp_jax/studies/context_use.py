"""How much of its context a trained model uses: loss by position, and loss vs carried context.

* `position_losses`: the mean NLL at each position of the window over non-overlapping windows of
  n tokens (targets n + 1 apart), as the official Perceiver AR evaluates: a model that uses its
  context has a loss that falls with the position; latent models score only their last l.
* `context_curve`: the loss of the same target segments (s tokens each) when a model sees c
  segments of context before them, c = 0, 1, ...: each window is [c previous segments ; the
  target segment], scored on the target segment only. For LLP a window's forward from a
  segment boundary is its stream restarted c segments back, so the curve says whether the
  receptive field L * k * s shows up in the loss; `stream` adds LLP's unbounded carried context
  (the whole text streamed). The dense transformer is measured on the same targets and windows
  (c + 1) * s <= n.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from llp_jax.evaluation import protocols


def _nll(model, inputs_BxT: np.ndarray, targets_BxT: np.ndarray, batch: int) -> np.ndarray:
    """NLL [B, Q] of the model's scored positions (the last Q = T - loss_start(T))."""
    model = model.for_inference()
    graphdef, params = nnx.split(model)
    T = inputs_BxT.shape[1]
    start = model.loss_start(T)
    out = []
    for i in range(0, len(inputs_BxT), batch):
        x, y = inputs_BxT[i : i + batch], targets_BxT[i : i + batch, start:]
        pad = batch - len(x)  # one compiled shape
        if pad:
            x, y = np.pad(x, ((0, pad), (0, 0))), np.pad(y, ((0, pad), (0, 0)))
        nll = protocols.window_nll(graphdef, params, jax.numpy.asarray(x), jax.numpy.asarray(y))
        out.append(np.asarray(nll)[: batch - pad])
    return np.concatenate(out)


def position_losses(model, tokens_N, *, window: int, max_windows: int = 64, batch: int = 8):
    """float [n]: mean NLL per window position (NaN where the model scores nothing)."""
    tokens_N = np.asarray(tokens_N, np.int32)
    count = min((len(tokens_N) - 1) // window, max_windows)
    if count < 1:
        raise ValueError(f"{len(tokens_N)} tokens hold no window of {window} + 1")
    starts = np.arange(count) * window
    inputs = np.stack([tokens_N[a : a + window] for a in starts])
    targets = np.stack([tokens_N[a + 1 : a + window + 1] for a in starts])
    nll = _nll(model, inputs, targets, batch)
    out = np.full(window, np.nan)
    out[window - nll.shape[1] :] = nll.mean(axis=0)
    return out


def bucket_means(per_position: np.ndarray, width: int) -> list[float | None]:
    """Means over positions [0, width), [width, 2 width), ...; None for an unscored bucket."""
    out = []
    for a in range(0, len(per_position), width):
        part = per_position[a : a + width]
        part = part[~np.isnan(part)]
        out.append(float(part.mean()) if part.size else None)
    return out


def context_curve(model, tokens_N, *, segment: int, contexts, max_context: int,
                  num_targets: int = 256, batch: int = 8, stream: bool = False) -> dict:  # fmt: skip
    """{c: mean NLL of the target segments with c segments of context} (+ 'stream').

    The targets are segments max_context, max_context + 1, ... (at most `num_targets` of them), so
    every c in `contexts` (each <= max_context) scores exactly the same tokens.
    """
    tokens_N = np.asarray(tokens_N, np.int32)
    s = segment
    last = (len(tokens_N) - 1) // s  # segments with all their targets in the stream
    targets = np.arange(max_context, min(last, max_context + num_targets))
    if targets.size == 0:
        raise ValueError(f"{len(tokens_N)} tokens are too few for {max_context} context segments")
    curve = {}
    for c in contexts:
        starts = (targets - c) * s
        T = (c + 1) * s
        inputs = np.stack([tokens_N[a : a + T] for a in starts])
        outs = np.stack([tokens_N[a + 1 : a + T + 1] for a in starts])
        curve[str(c)] = float(_nll(model, inputs, outs, batch)[:, -s:].mean())
    if stream:
        end = (targets[-1] + 1) * s + 1
        nll, _, _ = protocols.stream_nll(model, tokens_N[:end], chunk=model.cfg.seq_len)
        picked = np.concatenate([nll[j * s : (j + 1) * s] for j in targets])
        curve["stream"] = float(picked.mean())
    return curve
