"""Document masks: with `document_mask`, attention never crosses an end-of-document token.
Probed on every model (changing document A never changes an output in document B, and without
the mask it does), equal to running each document alone where the architecture allows it, and
kept by every path: blocked windows, the reference, splash, streaming and the cached decoders."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.evaluation import sampling
from llp_jax.models import attention, attention_kernels
from llp_jax.models.masks import ExampleMask, MaskSpec
from tests.helpers.models import changed, jit, jit_forward, make_config, random_tokens

EOD = 255  # the tiny models' last token id stands for the end-of-document token
N = 128


def _docs(seed: int, boundary: int) -> np.ndarray:
    """N tokens: document A at 0..boundary (ending with EOD), document B after it."""
    tokens = random_tokens(seed, (N,), EOD)  # ids < EOD: no stray boundaries
    tokens[boundary] = EOD
    return tokens


def _model(name, faithful=False, document_mask=True, **kw):
    extra = {"v3_residual": "aligned"} if name == "enhanced_v3" else {}
    cfg = make_config(name, faithful, dropout=0.0, document_mask=document_mask, eod_id=EOD,
                      **extra, **kw)  # fmt: skip
    return models.build(cfg, seed=4)


CASES = [(n, f) for n in models.MODEL_NAMES for f in (False, True)]


@pytest.mark.parametrize("name,faithful", CASES, ids=[f"{n}-{'code' if f else 'clean'}"
                                                      for n, f in CASES])  # fmt: skip
def test_document_a_never_reaches_document_b(name, faithful):
    boundary = 105  # inside the latent block (the last 32 positions) of the latent models
    tokens = _docs(0, boundary)
    probe = changed(tokens, slice(0, boundary), EOD)  # every token of A but its EOD
    for masked in (True, False):
        model = _model(name, faithful, document_mask=masked)
        forward = jit_forward(model)
        start = model.loss_start(N)  # output i is position start + i
        a, b = (np.asarray(forward(t[None]))[0] for t in (tokens, probe))
        in_b = slice(boundary + 1 - start, None)
        if masked:
            np.testing.assert_array_equal(a[in_b], b[in_b])
        else:  # the probe can fail: without the mask, A does reach B
            assert not np.allclose(a[in_b], b[in_b])


@pytest.mark.parametrize(
    "name,boundary,kw",
    [("transformer", 70, {}), ("llp", 63, {}), ("llp", 31, {"prev_segments": 2}),
     ("s2attn", 63, {})],
    ids=["transformer", "llp", "llp-k2", "s2attn"],
)  # fmt: skip
def test_equals_each_document_run_alone(name, boundary, kw):
    """Where a document's own positions are a translation of its positions alone (dense
    attention; LLP and S^2-Attn when A ends on a segment / group boundary), B packed after A
    scores exactly as B by itself, and A as A by itself."""
    model = _model(name, **kw)
    tokens = _docs(1, boundary)
    packed = np.asarray(jit_forward(model)(tokens[None]))[0]
    alone_b = np.asarray(jit_forward(model)(tokens[None, boundary + 1 :]))[0]
    alone_a = np.asarray(jit_forward(model)(tokens[None, : boundary + 1]))[0]
    np.testing.assert_allclose(packed[boundary + 1 :], alone_b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(packed[: boundary + 1], alone_a, rtol=0, atol=1e-5)


def test_without_an_end_of_document_it_is_the_unmasked_model():
    for name in ("llp", "perceiver_ar", "enhanced_v3"):
        tokens = random_tokens(2, (2, N), EOD)
        on = jit_forward(_model(name))(tokens)
        off = jit_forward(_model(name, document_mask=False))(tokens)
        np.testing.assert_array_equal(np.asarray(on), np.asarray(off))


@pytest.mark.parametrize("block,back,shift", [(16, 1, 0), (16, 0, 8), (None, 0, 0)])
def test_every_attention_path_keeps_documents(block, back, shift):
    """Blocked windows and the dense paths against the explicit reference, with documents."""
    mask = MaskSpec(causal=True, block=block, blocks_back=back, block_shift=shift)
    B, T, H, D = 2, 64, 2, 8
    ks = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(key, (B, T, H, D)) for key in ks)
    docs = jnp.asarray(np.cumsum(np.random.default_rng(0).random((B, T)) < 0.08, axis=1))
    example = ExampleMask(None, docs, docs)
    pos = np.arange(T)
    fast = jit(lambda q, k, v: attention.attend(q, k, v, mask, q_pos=pos, k_pos=pos,
                                                example=example))(q, k, v)  # fmt: skip
    ref = attention.attend(q, k, v, mask, q_pos=pos, k_pos=pos, impl="reference", example=example)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), atol=1e-5, rtol=1e-5)
    plain = attention.attend(q, k, v, mask, q_pos=pos, k_pos=pos, impl="reference")
    assert not np.allclose(np.asarray(ref), np.asarray(plain))


@pytest.mark.skipif(attention_kernels.splash_module() is None, reason="no Pallas splash in jax")
def test_splash_takes_document_ids():
    mask = MaskSpec(causal=True, block=128, blocks_back=1)
    B, T, H, D = 1, 256, 2, 64
    ks = jax.random.split(jax.random.key(1), 3)
    q, k, v = (jax.random.normal(key, (B, T, H, D)) for key in ks)
    docs = jnp.asarray((np.arange(T) >= 100)[None].astype(np.int32))
    pos = np.arange(T)
    got = attention_kernels.splash_attention(q, k, v, mask, pos, pos, interpret=True,
                                             segment_ids=(docs, docs))  # fmt: skip
    ref = attention.attend(q, k, v, mask, q_pos=pos, k_pos=pos, impl="reference",
                           example=ExampleMask(None, docs, docs))  # fmt: skip
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=2e-5, rtol=2e-5)


def test_llp_stream_keeps_documents_like_the_parallel_form():
    model = _model("llp", num_layers=3)
    tokens = np.stack([_docs(3, 40), _docs(4, 90)])
    parallel = np.asarray(jit_forward(model)(tokens))
    graphdef, params = nnx.split(model)
    stream = jit(lambda p, t: nnx.merge(graphdef, p).stream(t)[0])(params, jnp.asarray(tokens))
    np.testing.assert_allclose(np.asarray(stream), parallel, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["llp", "transformer", "s2attn"])
def test_cached_decoding_keeps_documents(name):
    model = _model(name)
    tokens = np.stack([_docs(5, 50), _docs(6, 77)])[:, :100]
    cached = np.asarray(sampling.decode_logits(model, tokens, method="cached"))
    graphdef, params = nnx.split(model.for_inference())
    full = np.asarray(jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))(params, tokens))
    np.testing.assert_allclose(cached, full, rtol=0, atol=1e-5)


def test_the_authors_v3_residual_cannot_keep_documents():
    with pytest.raises(models.ConfigError, match="v3_residual='aligned'"):
        make_config("enhanced_v3", True, document_mask=True, eod_id=EOD)
    with pytest.raises(models.ConfigError, match="needs model.eod_id"):
        models.build(make_config("llp", document_mask=True))
