"""Prompt prefill: a ring-cache decoder fills its caches with one parallel forward of the prompt,
and what follows equals feeding the prompt token by token (logits to float rounding, greedy tokens
exactly) — for every ring model, prompts shorter and longer than the ring and than n, and with
document masks (an end-of-document token inside the prompt)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from llp_jax.evaluation import decoders as dec
from llp_jax.evaluation import sampling
from tests.evaluation.test_decoding import ATOL, _forward, _model, _tokens

EOD = 3


def _decoders(model):
    fast = dec.make_decoder(model.cfg, "cached")
    assert isinstance(fast, dec.RingCache) and fast.prefill  # the default
    return fast, dataclasses.replace(fast, prefill=False)


CASES = [
    ("llp", False, {}, 9),  # shorter than a segment
    ("llp", True, {}, 40),  # past the 32-slot ring: the ring wraps during the prefill
    ("llp", False, {"prev_segments": 2, "num_layers": 3}, 150),  # past n = 64
    ("transformer", False, {}, 37),
    ("s2attn", False, {}, 21),
    ("s2attn", False, {"s2attn_inference": "shifted"}, 70),
    ("llp", False, {"document_mask": True, "eod_id": EOD}, 45),
    ("transformer", False, {"document_mask": True, "eod_id": EOD}, 30),
]
IDS = ["llp-short", "llp-code-wrap", "llp-k2-past-n", "transformer", "s2attn", "s2attn-shifted",
       "llp-docs", "transformer-docs"]  # fmt: skip


@pytest.mark.parametrize("name,faithful,overrides,P", CASES, ids=IDS)
def test_prefilled_logits_equal_token_by_token_and_the_forward(name, faithful, overrides, P):
    model = _model(name, faithful, **overrides)
    tokens = _tokens((2, P + 30), seed=P)
    if "eod_id" in overrides:  # documents end inside the prompt and after it
        tokens[:, [P // 3, P - 2, P + 7]] = EOD
    fast, slow = _decoders(model)
    got = np.asarray(sampling.decode_logits(model, tokens, prompt_len=P, decoder=fast))
    want = np.asarray(sampling.decode_logits(model, tokens, prompt_len=P, decoder=slow))
    assert got.shape == (2, 31, model.cfg.vocab_size)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(got, _forward(model, tokens)[:, P - 1 :], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", ["llp", "transformer", "s2attn"])
def test_prefilled_greedy_generation_is_token_by_token_generation(name):
    model = _model(name, faithful=name == "llp")
    prompt = _tokens((2, 50), seed=7)
    fast, slow = _decoders(model)
    kw = dict(temperature=0.0)
    out = np.asarray(sampling.generate(model, prompt, 90, decoder=fast, **kw))
    np.testing.assert_array_equal(out, sampling.generate(model, prompt, 90, decoder=slow, **kw))
    np.testing.assert_array_equal(out[:, :50], prompt)


def test_prefill_state_matches_the_fed_state():
    """The ring after the prefill is the ring after feeding: same positions in the same slots."""
    model = _model("llp")
    fast, slow = _decoders(model)
    import jax.numpy as jnp

    buf = jnp.asarray(_tokens((1, 80), seed=1))
    caches, slot_pos, _ = fast.init(model, buf, 70)
    state = slow.init(model, buf, 0)
    for c in range(70):
        _, state = slow.step(model, state, buf, c)
    np.testing.assert_array_equal(slot_pos, state[1])
    np.testing.assert_allclose(caches[0][0], state[0][0][0], atol=ATOL)
    np.testing.assert_allclose(caches[1][1], state[0][1][1], atol=ATOL)
