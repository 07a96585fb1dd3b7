"""The fused, chunked head + cross-entropy equals the reference (optax on full logits): values
and gradients, for one chunk, many chunks and uneven chunks; and through the models' train
loss (`next_token_loss`, fused vs unfused) for a full-sequence and a latent model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.models import losses
from llp_jax.training.train_step import next_token_loss
from tests.helpers.models import random_tokens


def reference(h, w, b, t):
    logits = jnp.dot(h, w, preferred_element_type=jnp.float32) + b.astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, t).sum()


@pytest.mark.parametrize("rows", [48, 4096, 2000], ids=["one-chunk", "four-chunks", "uneven"])
def test_fused_head_equals_the_reference_values_and_gradients(rows):
    rng = np.random.default_rng(rows)
    d, vocab = 32, 515
    h = jnp.asarray(rng.standard_normal((rows, d)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((d, vocab)) * 0.3, jnp.float32)
    b = jnp.asarray(rng.standard_normal(vocab), jnp.float32)
    t = jnp.asarray(rng.integers(0, vocab, rows), jnp.int32)
    assert losses.fused_rows(rows)
    want, want_g = jax.value_and_grad(reference, argnums=(0, 1, 2))(h, w, b, t)
    got = jax.jit(losses.head_nll_sum)(h, w, b, t)
    # A cotangent other than 1 (the mean loss scales by 1/rows) must scale every gradient.
    scaled = lambda f: lambda *a: 0.37 * f(*a)  # noqa: E731
    got_g = jax.jit(jax.grad(scaled(losses.head_nll_sum), argnums=(0, 1, 2)))(h, w, b, t)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for g, r in zip(got_g, want_g):
        np.testing.assert_allclose(g, 0.37 * r, rtol=2e-5, atol=2e-6)


def test_bfloat16_inputs_accumulate_in_float32():
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.standard_normal((2048, 64)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((64, 300)) * 0.2, jnp.bfloat16)
    b = jnp.zeros(300, jnp.bfloat16)
    t = jnp.asarray(rng.integers(0, 300, 2048), jnp.int32)
    got, grads = jax.value_and_grad(losses.head_nll_sum, argnums=(0, 1))(h, w, b, t)
    assert got.dtype == jnp.float32 and grads[0].dtype == jnp.bfloat16
    np.testing.assert_allclose(got, reference(h, w, b, t), rtol=1e-5)


def test_awkward_row_counts_take_the_unfused_path():
    assert losses.chunk_rows(4096) == 1024 and losses.chunk_rows(2000) == 1000
    assert not losses.fused_rows(1031 * 2)  # 2 x a prime above the chunk: chunks of 2 rows
    assert losses.fused_rows(40)  # small: one chunk


@pytest.mark.parametrize("name", ["llp", "perceiver_ar"])
def test_the_train_loss_fused_equals_unfused(name):
    cfg = models.tiny(name)
    graphdef, params = nnx.split(models.build(cfg, seed=0))
    tokens = random_tokens(3, (4, cfg.seq_len + 1), cfg.vocab_size)
    batch = {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}

    def loss(fused):
        fn = lambda p: next_token_loss(graphdef, p, batch, None, fused=fused)  # noqa: E731
        return jax.jit(jax.value_and_grad(fn, has_aux=True))(params)

    (want, want_aux), want_g = loss(False)
    (got, got_aux), got_g = loss(True)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got_aux["nll_sum"], want_aux["nll_sum"], rtol=1e-6)
    assert got_aux["tokens"] == want_aux["tokens"]
    for g, r in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)
