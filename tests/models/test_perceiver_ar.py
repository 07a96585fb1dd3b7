"""PerceiverAR's cross-attend dropout: drops history keys of layer 1 while training, stays causal,
and changes nothing at evaluation; a knob of perceiver_ar alone, off in the code-faithful preset."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from llp_jax import models
from tests.helpers.models import changed, jit, make_config, random_tokens


def _pair(rate=0.5):
    cfg = make_config("perceiver_ar", num_layers=3)
    with_dropout = models.build(cfg.replace(cross_attend_dropout=rate), seed=1)
    plain = models.build(cfg, seed=1)
    return cfg, with_dropout, plain


def _logits(model, tokens, rng):
    return np.asarray(jit(lambda t, r: model(t, rng=r))(tokens, rng))


def test_no_effect_at_evaluation():
    cfg, model, plain = _pair()
    tokens = random_tokens(0, (2, cfg.seq_len), cfg.vocab_size)
    np.testing.assert_array_equal(_logits(model, tokens, None), _logits(plain, tokens, None))
    rng = jax.random.key(4)  # the inference copy ignores a key's cross-attend dropout
    inference = model.for_inference()
    np.testing.assert_array_equal(_logits(inference, tokens, rng), _logits(plain, tokens, rng))
    assert not np.allclose(_logits(model, tokens, rng), _logits(plain, tokens, rng))


def test_stays_causal_while_training():
    cfg, model, _ = _pair(rate=0.6)
    tokens = random_tokens(1, (1, cfg.seq_len), cfg.vocab_size)[0]
    rng = jax.random.key(9)
    base = _logits(model, tokens[None], rng)[0]
    m = cfg.seq_len - cfg.latent_len
    for p in (m + 3, m + 10, cfg.seq_len - 1):  # a scored position's future changes ...
        after = _logits(model, changed(tokens, slice(p, None), cfg.vocab_size)[None], rng)[0]
        # ... and no output at an earlier position moves (output i is position m + i).
        np.testing.assert_array_equal(after[: p - m], base[: p - m])


def test_a_knob_of_perceiver_ar_only_and_off_when_code_faithful():
    assert models.tiny("perceiver_ar", faithful=True).cross_attend_dropout == 0.0
    with pytest.raises(models.ConfigError, match="cross_attend_dropout=0.1 applies only"):
        make_config("llp", cross_attend_dropout=0.1)
    with pytest.raises(models.ConfigError, match=r"must be in \[0, 1\)"):
        make_config("perceiver_ar", cross_attend_dropout=1.0)
