"""Perplexity protocols: the standard protocol scores every target exactly once and equals a
brute-force per-token computation; the paper protocol is the mean of window means; LLP's stream
protocol equals the parallel forward over the whole stream; per-unit figures are consistent."""

from __future__ import annotations

import math

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.data import ByteTokenizer
from llp_jax.evaluation import perplexity as ppl
from llp_jax.evaluation import protocols

TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be "
    "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families, that he is considered the rightful property of some one or other."
)


def _stream() -> np.ndarray:
    tokens = ByteTokenizer().encode(TEXT)
    assert tokens.tolist() == list(TEXT.encode("utf-8"))  # the known token stream
    return tokens


def _model(name: str, **overrides):
    # n = 64, latents 16, segments 16: small enough to brute-force every target.
    base = {"seq_len": 64, "vocab_size": 259}
    if name in models.LATENT_MODELS:
        base["latent_len"] = 16
    if name == "llp":
        base["segment_len"] = 16
    return models.build(models.tiny(name, **{**base, **overrides}), seed=1)


def _nll_rows(model, inputs_KxT, targets_KxP):
    """NLL of every scored position of each row: one jitted batched forward, [K, P]."""
    graphdef, params = nnx.split(model)
    fn = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    logits = fn(params, np.asarray(inputs_KxT, np.int32))
    return np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, targets_KxP))


# ----------------------------------------------------------------------------- the window plan
@pytest.mark.parametrize("N", [2, 5, 64, 65, 66, 200, 333])
@pytest.mark.parametrize(
    "window,stride,offset",
    [(64, 32, 0), (64, 1, 0), (64, 64, 0), (64, 16, 48), (64, 5, 48), (16, 16, 0)],
)
def test_plan_scores_every_target_exactly_once(N, window, stride, offset):
    plan = protocols.plan_standard(
        N, window, stride, lambda T: max(T - (window - offset), 0) if offset else 0
    )
    counts = np.zeros(N + plan.pad, int)
    for end, new in zip(plan.ends, plan.first_new):
        assert end - plan.window >= 0 and end <= N - 1 + plan.pad  # windows lie in the stream
        scored = np.arange(end - plan.scored + 1, end + 1)
        counts[scored[scored >= new]] += 1
    assert counts[plan.pad + 1 :].tolist() == [1] * (N - 1)  # targets t_1..t_{N-1}, once each
    assert counts[: plan.pad + 1].sum() == 0  # no pad and no t_0 is ever a scored target


def test_stride_beyond_the_latent_block_is_refused():
    with pytest.raises(ValueError, match="stride=32 must be in"):
        ppl.evaluate_perplexity(_model("perceiver_ar"), _stream(), stride=32)


# ----------------------------------------------------------------------------- brute force
@pytest.mark.parametrize(
    "name,stride,overrides",
    [("transformer", 24, {}), ("llp", 16, {}), ("s2attn", 64, {}),
     ("s2attn", 64, {"s2attn_inference": "shifted"})],
    ids=["transformer", "llp", "s2attn-dense", "s2attn-shifted"],
)  # fmt: skip
def test_standard_matches_brute_force_all_positions(name, stride, overrides):
    model, tokens = _model(name, **overrides), _stream()
    N, n = len(tokens), 64
    res = ppl.evaluate_perplexity(model, tokens, stride=stride, keep_token_nll=True, batch_size=4)
    assert res.num_scored == res.num_targets == N - 1
    # Brute force, target by target: t_j is predicted by the first window (ends n, n+S, ...)
    # that contains it, from exactly the tokens of that window before it. Right-padding the
    # context to n changes nothing (the models are causal); read the logit at its last token.
    ends = np.minimum(n + stride * np.arange(N), N - 1)
    rows, lengths = [], []
    for j in range(1, N):
        start = ends[np.argmax(ends >= j)] - n
        ctx = tokens[start:j]
        rows.append(np.pad(ctx, (0, n - len(ctx))))
        lengths.append(len(ctx))
    rows = np.stack(rows)
    graphdef, params = nnx.split(model.for_inference())  # the forward evaluation runs
    logits = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))(params, rows)
    last = np.asarray(logits)[np.arange(N - 1), np.asarray(lengths) - 1]
    brute = np.asarray(optax.softmax_cross_entropy_with_integer_labels(last, tokens[1:]))
    np.testing.assert_allclose(res.token_nll, brute, rtol=0, atol=1e-5)
    assert math.isclose(res.perplexity, math.exp(brute.mean()), rel_tol=1e-6)


@pytest.mark.parametrize("name,stride", [("perceiver_ar", 16), ("enhanced_v3", 7)])
def test_standard_matches_brute_force_latent_models(name, stride):
    model, tokens = _model(name), _stream()
    N, n, l = len(tokens), 64, 16
    pad_id = 258
    res = ppl.evaluate_perplexity(model, tokens, stride=stride, keep_token_nll=True, pad_id=pad_id)
    assert res.num_scored == res.num_targets == N - 1 and not np.isnan(res.token_nll).any()
    # Brute force: the stream left-padded with n - l pads; t_j (padded index j + n - l) is scored
    # by the first window end >= it, at latent (index - 1) - (end - n) - (n - l).
    pad = n - l
    u = np.concatenate([np.full(pad, pad_id), tokens]).astype(np.int32)
    ends = np.minimum(n + stride * np.arange(N), N - 1 + pad)
    inputs, targets, where = [], [], []
    for j in range(1, N):
        end = ends[np.argmax(ends >= j + pad)]
        inputs.append(u[end - n : end])
        targets.append(u[end - l + 1 : end + 1])
        where.append(j + pad - 1 - (end - n) - (n - l))
    nll = _nll_rows(model, np.stack(inputs), np.stack(targets))
    brute = nll[np.arange(N - 1), where]
    np.testing.assert_allclose(res.token_nll, brute, rtol=0, atol=1e-5)
    assert math.isclose(res.loss, brute.mean(), rel_tol=1e-6)


def test_short_stream_is_one_window_for_all_position_models():
    tokens = _stream()[:20]
    res = ppl.evaluate_perplexity(_model("llp"), tokens, keep_token_nll=True)
    assert (res.num_windows, res.window, res.num_scored) == (1, 19, 19)
    assert res.stride <= res.window  # was the default's n / 2 = 32: a stride past its one window


# ----------------------------------------------------------------------------- paper, stream
@pytest.mark.parametrize("name", ["llp", "perceiver_ar"])
def test_paper_protocol_is_the_mean_of_window_means(name):
    model, tokens = _model(name), _stream()
    N, n = len(tokens), 64
    res = ppl.evaluate_perplexity(model, tokens, protocol="paper")
    starts = np.arange(0, N - n, n // 2)
    Q = n - model.loss_start(n)
    w = np.stack([tokens[s : s + n + 1] for s in starts])
    means = _nll_rows(model, w[:, :-1], w[:, n - Q + 1 :]).mean(axis=1)
    assert (res.num_windows, res.num_scored) == (len(starts), len(starts) * Q)
    assert math.isclose(res.perplexity, math.exp(means.mean()), rel_tol=1e-6)
    if name == "llp":  # overlapping windows: targets counted twice
        assert res.num_scored > res.num_targets


@pytest.mark.parametrize("chunk", [32, 64])
def test_llp_stream_protocol_equals_the_parallel_forward(chunk):
    model, tokens = _model("llp", prev_segments=1), _stream()
    res = ppl.evaluate_perplexity(
        model, tokens, protocol="stream", window=chunk, keep_token_nll=True
    )
    full = _nll_rows(model, tokens[None, :-1], tokens[None, 1:])[0]  # one window of N-1 tokens
    assert res.num_scored == len(tokens) - 1
    np.testing.assert_allclose(res.token_nll, full, rtol=0, atol=1e-5)


def test_per_unit_figures():
    tokens = _stream()
    words = len(TEXT.split())
    res = ppl.evaluate_perplexity(
        _model("transformer"), tokens, num_bytes=len(tokens), num_chars=len(TEXT), num_words=words
    )
    assert math.isclose(res.bits_per_byte, res.bits_per_token)  # byte tokens
    assert math.isclose(res.bits_per_char, res.bits_per_token)  # ASCII text
    assert math.isclose(res.word_perplexity, math.exp(res.loss * len(tokens) / words))
    assert res.to_dict()["num_targets"] == len(tokens) - 1 and "token_nll" not in res.to_dict()


@pytest.mark.parametrize("protocol", ["standard", "paper", "stream"])
def test_progress_counts_every_batch_up_to_the_total(protocol):
    """`progress(done, total)` (experiments.evaluate's bar) after each batch of windows or each
    stream chunk: rising, ending at the total, which is the result's window count; the figures
    are those of a run without it."""
    model, tokens = _model("llp"), _stream()
    calls = []
    got = ppl.evaluate_perplexity(model, tokens, protocol=protocol, batch_size=3,
                                  progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    plain = ppl.evaluate_perplexity(model, tokens, protocol=protocol, batch_size=3)
    assert got.loss == plain.loss
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and len(set(dones)) == len(dones) and len(calls) > 1
    assert {t for _, t in calls} == {got.num_windows} and dones[-1] == got.num_windows


@pytest.mark.parametrize("protocol", ["standard", "paper", "stream"])
def test_a_short_text_runs_only_the_rows_and_tokens_it_has(protocol, monkeypatch):
    """A batch_size above a text's window count (the default 8 on a paragraph given to
    `evaluate --text`) ran batch_size rows, all but a few copies of the last window; a stream
    chunk longer than the text (`--window=100000` for the whole book as context) ran that many
    tokens of padding, allocated before it ran. Now the rows and the tokens the text has, with
    the figures of a batch that fits it exactly."""
    model, tokens = _model("llp"), _stream()
    shapes = []
    for name in ("window_nll", "_stream_chunk"):
        real = getattr(protocols, name)
        spy = lambda *a, real=real: shapes.append(a[2].shape) or real(*a)  # noqa: E731
        monkeypatch.setattr(protocols, name, spy)
    if protocol == "stream":
        got = ppl.evaluate_perplexity(model, tokens, protocol="stream", window=16 * 10**6,
                                      keep_token_nll=True)  # fmt: skip
        run = -(-(len(tokens) - 1) // 16) * 16  # the text, to a whole segment
        assert shapes == [(1, run)] and (got.window, got.num_windows) == (run, 1)
        full = _nll_rows(model, tokens[None, :-1], tokens[None, 1:])[0]
        np.testing.assert_allclose(got.token_nll, full, rtol=0, atol=1e-5)
        return
    got = ppl.evaluate_perplexity(model, tokens, protocol=protocol, batch_size=1000)
    K = got.num_windows
    assert 1 < K < 1000 and [s[0] for s in shapes] == [K]
    assert ppl.evaluate_perplexity(model, tokens, protocol=protocol, batch_size=K).loss == got.loss
