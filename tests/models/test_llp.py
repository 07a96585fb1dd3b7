"""LLP: receptive field (k*L segments back), streaming == parallel, streaming state, long streams,
and the attention cost of its mask."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from llp_jax import models
from tests.helpers.models import changed, jit, jit_forward, jit_stream, make_config, random_tokens

V = 256


def _llp(faithful=False, **overrides):
    return make_config("llp", faithful, **overrides)


# ----------------------------------------------------------------------------- receptive field
@pytest.mark.parametrize(
    "num_layers,prev_segments",
    [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2)],
    ids=lambda v: str(v),
)
def test_receptive_field_is_k_times_L_segments(num_layers, prev_segments):
    n, s = 128, 16  # 8 segments
    cfg = _llp(seq_len=n, segment_len=s, num_layers=num_layers, prev_segments=prev_segments)
    reach = num_layers * prev_segments
    t = n // s - 1  # the last segment
    assert t - reach - 1 >= 0
    seg = lambda j: (np.arange(n) >= j * s) & (np.arange(n) < (j + 1) * s)
    first_q, last_q = t * s, (t + 1) * s - 1  # probe both ends of segment t

    base = random_tokens(3, (n,), V)
    rows = [
        base,
        # one token of segment t - reach: must be seen (its middle and its first token)
        changed(base, np.arange(n) == (t - reach) * s + s // 2, V, seed=1),
        changed(base, np.arange(n) == (t - reach) * s, V, seed=2),
        # all of segment t - reach - 1: must not be seen
        changed(base, seg(t - reach - 1), V, seed=3),
        # everything before segment t - reach
        changed(base, np.arange(n) < (t - reach) * s, V, seed=4),
    ]
    out = np.asarray(jit_forward(models.build(cfg))(np.stack(rows)))
    ref = out[0]
    for q in (first_q, last_q):
        for r in (1, 2):
            assert np.abs(out[r, q] - ref[q]).max() > 1e-5, (
                f"L={num_layers}, k={prev_segments}: position {q} (segment {t}) does not depend "
                f"on segment {t - reach}"
            )
        for r in (3, 4):
            np.testing.assert_allclose(
                out[r, q],
                ref[q],
                atol=1e-5,
                rtol=0,
                err_msg=f"L={num_layers}, k={prev_segments}: position {q} (segment {t}) depends on "
                f"a segment before {t - reach}",
            )
    # and outputs of the earlier segments t - reach .. t-1 follow the same rule one step closer:
    # the first position of segment t - 1 sees segment t - 1 - reach
    q = (t - 1) * s
    assert np.abs(out[4, q] - ref[q]).max() > 1e-5


# ----------------------------------------------------------------------------- streaming
STREAM_CASES = [
    # (n, s, L, k, batch, faithful)
    (128, 32, 2, 1, 2, False),
    (128, 32, 2, 1, 2, True),
    (64, 16, 3, 2, 1, False),
    (64, 16, 3, 2, 2, True),
    (96, 32, 1, 1, 3, False),
    (64, 8, 2, 3, 1, True),
]


@pytest.mark.parametrize("n,s,L,k,batch,faithful", STREAM_CASES)
def test_streaming_equals_parallel(n, s, L, k, batch, faithful):
    cfg = _llp(faithful, seq_len=n, segment_len=s, num_layers=L, prev_segments=k)
    model = models.build(cfg, seed=1)
    tokens = random_tokens(5, (batch, n), V)
    parallel = np.asarray(jit_forward(model)(tokens))
    streamed, state = jit_stream(model)(tokens)
    streamed = np.asarray(streamed)
    assert streamed.shape == parallel.shape == (batch, n, V)
    np.testing.assert_allclose(streamed, parallel, atol=1e-5, rtol=1e-5)
    assert int(state["segment"]) == n // s


def test_parallel_on_a_shorter_input():
    """The parallel form takes any length (not only multiples of s): a prefix of the sequence
    gives the prefix of the outputs."""
    cfg = _llp(True, seq_len=128, segment_len=32)
    model = models.build(cfg, seed=6)
    tokens = random_tokens(11, (2, 128), V)
    fwd = jit_forward(model)
    full = np.asarray(fwd(tokens))
    short = np.asarray(fwd(tokens[:, :80]))
    assert short.shape == (2, 80, V)
    np.testing.assert_allclose(short, full[:, :80], atol=1e-5, rtol=1e-5)


def test_streaming_in_two_calls_equals_one_call():
    cfg = _llp(True, seq_len=128, segment_len=16, num_layers=2, prev_segments=2)
    model = models.build(cfg, seed=2)
    stream = jit_stream(model)
    tokens = random_tokens(6, (2, 128), V)
    whole, state_whole = stream(tokens)
    first, state = stream(tokens[:, :64])
    second, state = stream(tokens[:, 64:], state)
    np.testing.assert_allclose(
        np.concatenate([first, second], axis=1), np.asarray(whole), atol=1e-5, rtol=1e-5
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), state, state_whole
    )
    # the per-segment API (init_stream + stream_segment) agrees too
    graphdef, params = nnx.split(model)
    segment = jit(lambda p, st, seg: nnx.merge(graphdef, p).stream_segment(st, seg))
    st = model.init_stream(2)
    seg_logits = []
    for j in range(3):
        lg, st = segment(params, st, jnp.asarray(tokens[:, 16 * j : 16 * (j + 1)]))
        seg_logits.append(np.asarray(lg))
    assert int(st["segment"]) == 3
    np.testing.assert_allclose(
        np.concatenate(seg_logits, axis=1), np.asarray(whole)[:, :48], atol=1e-5, rtol=1e-5
    )


def test_streaming_beyond_seq_len():
    n = 64
    cfg = _llp(False, seq_len=n, segment_len=16, num_layers=2)
    model = models.build(cfg, seed=3)
    tokens = random_tokens(7, (1, 4 * n), V)
    streamed, state = jit_stream(model)(tokens)
    streamed = np.asarray(streamed)
    assert streamed.shape == (1, 4 * n, V)
    assert np.isfinite(streamed).all()
    assert int(state["segment"]) == 4 * n // 16
    parallel = np.asarray(jit_forward(model)(tokens[:, :n]))
    np.testing.assert_allclose(streamed[:, :n], parallel, atol=1e-5, rtol=1e-5)
    # later windows are not a copy of the first (positions keep advancing)
    assert np.abs(streamed[:, n : 2 * n] - streamed[:, :n]).max() > 1e-3
    # a stream must be a whole number of segments
    with pytest.raises(models.ConfigError, match="segment_len"):
        model.stream(jnp.asarray(tokens[:, :20]))


def test_output_depends_only_on_the_window_not_on_absolute_position():
    """Clean LLP (RoPE on q and k only, separate V): the output at segment t is a function of the
    tokens of segments t-k*L..t alone; streaming the same window after prefixes of different
    lengths gives the same output (RoPE is relative)."""
    s, L = 16, 2
    cfg = _llp(False, seq_len=64, segment_len=s, num_layers=L)
    model = models.build(cfg, seed=4)
    stream = jit_stream(model)
    window = random_tokens(8, (1, (L + 1) * s), V)
    prefix_a = random_tokens(9, (1, 2 * s), V)
    prefix_b = random_tokens(10, (1, 5 * s), V)
    out_a, _ = stream(np.concatenate([prefix_a, window], axis=1))
    out_b, _ = stream(np.concatenate([prefix_b, window], axis=1))
    np.testing.assert_allclose(
        np.asarray(out_a)[:, -s:], np.asarray(out_b)[:, -s:], atol=2e-4, rtol=2e-4
    )


# ----------------------------------------------------------------------------- cost
@pytest.mark.parametrize("n,s", [(128, 32), (2048, 256), (96, 16)])
def test_llp_mask_pairs(n, s):
    model = models.abstract_model(_llp(seq_len=n, segment_len=s))
    pos = np.arange(n)
    S = n // s
    # docs/models.md's measure s*(2n - s): every (query, key) pair of the segment window, the current
    # segment counted whole (S segments x s queries x 2s keys, minus segment 0's missing window).
    dense_window = models.MaskSpec(causal=False, block=s, blocks_back=1)
    assert dense_window.pairs(pos, pos) == s * (2 * n - s)
    # The model's causal mask attends to exactly the causal half of the current segment.
    assert model.attention_mask(n).pairs(pos, pos) == s * (2 * n - s) - S * s * (s - 1) // 2
    # per layer, and L layers cost L times that (the mask is the same in every layer)
    assert model.attention_mask(n) == models.MaskSpec(causal=True, block=s, blocks_back=1)


def test_llp_mask_pairs_relate_to_spec_measure():
    """docs/models.md counts LLP's cost as s*(2n - s) pairs per layer (k = 1, the current segment in
    full, as a blocked kernel computes it); MaskSpec.pairs is the exact causal count, smaller by
    the masked half of the current segment, n*(s - 1)/2 (documented in MaskSpec.pairs)."""
    n, s = 128, 32
    mask = models.abstract_model(_llp(seq_len=n, segment_len=s)).attention_mask(n)
    pos = np.arange(n)
    got = mask.pairs(pos, pos)
    assert got == s * (2 * n - s) - n * (s - 1) // 2, got
