"""Cached decoders equal the full forward (LLP streaming segment cache, transformer KV cache,
S^2-Attn ring, PerceiverAR latent cache); greedy generation is deterministic and identical between
cached and recompute decoders; LLP decodes past n with a state of fixed size; sampling options."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.evaluation import decoders as dec
from llp_jax.evaluation import sampling

ATOL = 1e-5
V = 64


def _model(name: str, faithful: bool = False, **overrides):
    base = {"seq_len": 64, "vocab_size": V, "d_model": 32, "num_heads": 4}
    if name in models.LATENT_MODELS:
        base["latent_len"] = 16
    if name == "llp":
        base["segment_len"] = 16
    cfg = models.tiny(name, faithful=faithful).replace(**{**base, **overrides})
    return models.build(cfg.replace(dropout=0.0).validate(), seed=2)


def _tokens(shape, seed=0):
    return np.random.default_rng(seed).integers(0, V, size=shape).astype(np.int32)


def _forward(model, tokens):
    """The parallel forward as inference runs it (S^2-Attn: dense unless 'shifted')."""
    graphdef, params = nnx.split(model.for_inference())
    return np.asarray(jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))(params, tokens))


# ----------------------------------------------------------------------------- logits = forward
@pytest.mark.parametrize(
    "name,faithful,overrides,T",
    [
        ("llp", False, {}, 160),  # 2.5 n: decoding runs past the training length
        ("llp", True, {}, 160),  # segment-0 projection, K = V, RoPE in layer 1 only
        ("llp", False, {"prev_segments": 2, "num_layers": 3}, 100),
        ("transformer", False, {}, 64),
        ("s2attn", False, {}, 100),  # LongLoRA's protocol: dense at inference
        ("s2attn", False, {"s2attn_inference": "shifted"}, 100),  # the training masks
    ],
    ids=["llp", "llp-code", "llp-k2-L3", "transformer", "s2attn", "s2attn-shifted"],
)
def test_cached_logits_equal_the_parallel_forward(name, faithful, overrides, T):
    model = _model(name, faithful, **overrides)
    tokens = _tokens((2, T))
    cached = np.asarray(sampling.decode_logits(model, tokens, method="cached"))
    np.testing.assert_allclose(cached, _forward(model, tokens), rtol=0, atol=ATOL)


@pytest.mark.parametrize("slide", [16, 5])  # (slide 1: see the greedy test)
def test_perceiver_ar_cache_equals_the_full_forward_of_its_window(slide):
    model = _model("perceiver_ar")
    n, l, P, T = 64, 16, 7, 60
    tokens = _tokens((2, T), seed=3)
    cached = np.asarray(sampling.decode_logits(model, tokens, prompt_len=P, slide=slide))
    # The window schedule: it first ends at the first fed token, and slides when full. The
    # buffer holds n pads (id 0) before the tokens, as the decoder's.
    buf = np.concatenate([np.zeros((2, n), np.int32), tokens, np.zeros((2, n), np.int32)], 1)
    start, windows, where = P - 1 + n - (n - 1), [], []
    for c in range(n + P - 1, n + T):
        if c - start >= n:
            start += slide
        windows.append(buf[:, start : start + n])
        where.append(c - start - (n - l))
    ref = _forward(model, np.concatenate(windows))  # [K*2, l, V]
    ref = ref.reshape(len(windows), 2, l, -1)[np.arange(len(windows)), :, where]
    np.testing.assert_allclose(cached, ref.transpose(1, 0, 2), rtol=0, atol=ATOL)


def test_llp_decode_state_does_not_grow():
    model = _model("llp")
    decoder = dec.make_decoder(model.cfg, "cached")
    shapes = [
        jax.tree.map(
            lambda a: a.shape,
            jax.eval_shape(lambda b: decoder.init(model, b, 0), jnp.zeros((1, T), int)),
        )
        for T in (64, 10_000)
    ]
    assert shapes[0] == shapes[1]
    assert decoder.slots == 2 * 16  # previous segment + current partial segment


def test_llp_generates_past_n_consistently():
    """Greedy tokens 3n long: each equals the argmax of the parallel forward on its prefix."""
    model = _model("llp")
    prompt = _tokens((1, 5), seed=4)
    out = np.asarray(sampling.generate(model, prompt, 3 * 64, temperature=0.0))
    assert out.shape == (1, 5 + 3 * 64)
    np.testing.assert_array_equal(out[:, :5], prompt)
    greedy = _forward(model, out[:, :-1]).argmax(-1)
    np.testing.assert_array_equal(out[:, 5:], greedy[:, 4:])


# ----------------------------------------------------------------------------- greedy identity
@pytest.mark.parametrize(
    "name,cached_kwargs,recompute_align",
    [
        ("llp", {}, "right"),
        ("transformer", {}, "right"),
        ("s2attn", {}, "right"),
        ("perceiver_ar", {"slide": 1}, "left"),
    ],
)
def test_greedy_cached_equals_recompute(name, cached_kwargs, recompute_align):
    model = _model(name, faithful=name == "llp")
    prompt = _tokens((2, 9), seed=5)
    num_new = 64 - 9  # total length n: the recompute window holds the whole text
    cached = sampling.generate(
        model, prompt, num_new, temperature=0.0, method="cached", **cached_kwargs
    )
    again = sampling.generate(
        model, prompt, num_new, temperature=0.0, method="cached", **cached_kwargs
    )
    recompute = sampling.generate_recompute(
        model, prompt, num_new, 0, window=64, temperature=0.0, align=recompute_align
    )
    np.testing.assert_array_equal(cached, again)  # deterministic
    np.testing.assert_array_equal(cached, recompute)


def test_models_without_a_cache_use_recompute():
    cfg = _model("enhanced_v1", faithful=True).cfg
    assert isinstance(dec.make_decoder(cfg), dec.Recompute)
    with pytest.raises(ValueError, match="has no cached decoder"):
        dec.make_decoder(cfg, "cached")
    model = _model("enhanced_v3")
    out = sampling.generate(model, _tokens((1, 3)), 5, temperature=0.0)
    assert out.shape == (1, 8)


# ----------------------------------------------------------------------------- sampling options
def test_sampling_seed_top_k_top_p_and_stop():
    model = _model("llp")
    prompt = _tokens((3, 4), seed=6)
    gen = lambda **kw: np.asarray(sampling.generate(model, prompt, 40, **kw))
    greedy = gen(temperature=0.0)
    np.testing.assert_array_equal(gen(rng=7, temperature=1.0), gen(rng=7, temperature=1.0))
    assert not np.array_equal(gen(rng=7, temperature=1.0), gen(rng=8, temperature=1.0))
    np.testing.assert_array_equal(gen(rng=3, top_k=1), greedy)
    np.testing.assert_array_equal(gen(rng=3, top_p=1e-6), greedy)
    # A stop token: everything after a row's first stop is the stop token; rows without one
    # are unaffected (the loop only exits early once every row has stopped).
    stop = int(greedy[0, 10])
    out = gen(temperature=0.0, stop_id=stop)
    for row, ref in zip(out, greedy):
        hits = np.flatnonzero(ref[4:] == stop)
        if hits.size:
            first = 4 + hits[0]
            np.testing.assert_array_equal(row[: first + 1], ref[: first + 1])
            assert (row[first:] == stop).all()
        else:
            np.testing.assert_array_equal(row, ref)


# ----------------------------------------------------------------------------- streamed blocks
@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("llp", {}),  # the streaming segment cache, past n
        ("transformer", {"method": "cached"}),  # the KV cache
        ("perceiver_ar", {"slide": 3}),  # the latent cache, sliding
        ("enhanced_v3", {}),  # recompute
        ("llp", {"method": "recompute"}),
    ],
)
@pytest.mark.parametrize("sampler", [{"temperature": 0.9, "top_k": 20}, {"stop_id": "greedy"}])
def test_streamed_blocks_are_the_generation(name, kwargs, sampler):
    """`generate_stream`'s blocks, whatever their sizes (0.2 ms calls: many blocks of a few
    steps), concatenate to `generate`'s tokens: same keys, same stop handling; the stream ends
    early once every row stopped."""
    model = _model(name)
    prompt = _tokens((3, 7), seed=8)
    num_new = 150  # past n = 64
    if sampler.get("stop_id") == "greedy":
        greedy = np.asarray(sampling.generate(model, prompt, num_new, temperature=0.0, **kwargs))
        sampler = {"temperature": 0.0, "stop_id": int(greedy[1, 20])}  # row 1 stops at 20
    whole = np.asarray(sampling.generate(model, prompt, num_new, 4, **sampler, **kwargs))
    blocks = list(sampling.generate_stream(model, prompt, num_new, 4, seconds=2e-4,
                                           **sampler, **kwargs))  # fmt: skip
    assert len(blocks) > 3 and all(b.dtype == np.int32 and b.shape[0] == 3 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole[:, 7:])


def test_a_stream_of_stopped_rows_ends_early():
    model = _model("llp")
    prompt = _tokens((2, 5), seed=9)
    greedy = np.asarray(sampling.generate(model, prompt, 40, temperature=0.0))
    stop = int(greedy[0, 8])
    rows = [r for r in greedy[:, 5:] if stop in r]
    if len(rows) < 2:
        prompt, greedy = prompt[:1], greedy[:1]
    blocks = list(sampling.generate_stream(model, prompt, 10_000, temperature=0.0,
                                           stop_id=stop, seconds=1e-3))  # fmt: skip
    out = np.concatenate(blocks, axis=1)
    assert out.shape[1] == 10_000 and (out[:, 40:] == stop).all()
    assert len(blocks) < 40  # the stop ended the loop; no call for each of the 10,000 steps


@pytest.mark.parametrize("temperature,top_p", [(1e-40, 1.0), (1e-300, 1.0), (1e-38, 1.0),
                                               (0.8, 1e-40), (0.8, 1e-300), (1e-40, 1e-40)])  # fmt: skip
def test_the_smallest_temperatures_and_top_p_tend_to_greedy(temperature, top_p):
    """`sample --temperature=1e-40` drew token 2 at every step, `--top_p=1e-40` token 0: the
    logits over a subnormal temperature were inf - inf = NaN, and top_p, flushed to 0 in
    float32, kept no token. Both are the limit of sampling: greedy."""
    logits = jax.random.normal(jax.random.key(0), (16, 259)) * 5.0
    greedy = np.asarray(jnp.argmax(logits, axis=-1))
    for seed in range(3):
        drawn = sampling.sample_logits(logits, jax.random.key(seed), temperature=temperature,
                                       top_p=top_p)  # fmt: skip
        np.testing.assert_array_equal(np.asarray(drawn), greedy)
    # Huge ones still draw from (nearly) every token, never NaN.
    wide = sampling.sample_logits(logits, jax.random.key(1), temperature=1e30)
    assert len(set(np.asarray(wide).tolist())) > 8
