"""The attention primitive: fast (blocked) path == explicit-mask reference == a NumPy softmax;
dropout; and whole models with attention_impl='xla' vs 'reference'. (MaskSpec's hand-checked
semantics: test_masks.py; RoPE: test_rotary.py.)"""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from llp_jax import models
from tests.helpers.models import (
    compiled_dot_operand_types,
    jit,
    jit_forward,
    make_config,
    random_tokens,
)

MS = models.MaskSpec


def _attend(q, k, v, mask, *, q_pos, k_pos, **kw):
    """`models.attend` under jit (positions stay static NumPy constants via the closure)."""
    rng = kw.pop("rng", None)
    fn = jit(lambda q, k, v, r: models.attend(q, k, v, mask, q_pos=q_pos, k_pos=k_pos, rng=r, **kw))
    return fn(q, k, v, rng)


def _qkv(seed, B, Tq, Tk, H, D):
    ks = jax.random.split(jax.random.key(seed), 3)
    q = jax.random.normal(ks[0], (B, Tq, H, D), jnp.float32)
    k = jax.random.normal(ks[1], (B, Tk, H, D), jnp.float32)
    v = jax.random.normal(ks[2], (B, Tk, H, D), jnp.float32)
    return q, k, v


def _numpy_attention(q, k, v, allowed_QxK):
    """Plain softmax attention in float64 NumPy; rows with no visible key are not compared."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    logits = np.where(allowed_QxK[None, None], logits, -np.inf)
    logits = logits - logits.max(-1, keepdims=True)
    p = np.exp(logits)
    p = p / p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, v)


# ----------------------------------------------------------------------------- fast == reference
BLOCK_CASES = [
    # (T, block, blocks_back, block_shift, offset, causal)
    (64, 16, 1, 0, 0, True),  # LLP, k = 1, T a multiple of the block
    (50, 16, 1, 0, 0, True),  # T not a multiple of the block
    (50, 16, 2, 0, 7, True),  # k = 2, positions starting at an offset
    (37, 8, 0, 4, 0, True),  # S^2 shifted groups, ragged length
    (37, 8, 0, 4, 13, True),  # ... at an offset
    (64, 16, 0, 8, 0, True),  # S^2 shifted head group of a real model
    (45, 10, 3, 3, 21, True),  # odd everything
    (20, 32, 1, 0, 5, True),  # block longer than the sequence
    (48, 16, 1, 0, 0, False),  # non-causal window
    (40, 12, 1, 5, 30, False),
]


@pytest.mark.parametrize("T,block,back,shift,offset,causal", BLOCK_CASES)
def test_blocked_path_equals_reference(T, block, back, shift, offset, causal):
    mask = MS(causal=causal, block=block, blocks_back=back, block_shift=shift)
    q, k, v = _qkv(T + block, 2, T, T, 3, 8)
    pos = np.arange(offset, offset + T, dtype=np.int32)
    fast = _attend(q, k, v, mask, q_pos=pos, k_pos=pos, impl="xla")
    ref = _attend(q, k, v, mask, q_pos=pos, k_pos=pos, impl="reference")
    assert fast.shape == ref.shape == q.shape
    np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), atol=1e-5, rtol=1e-5)
    allowed = mask.allowed(pos, pos)
    visible = allowed.any(-1)  # a query with no key (e.g. non-causal can't happen) is skipped
    expect = _numpy_attention(q, k, v, allowed)
    np.testing.assert_allclose(
        np.asarray(ref)[:, visible], expect[:, visible], atol=1e-5, rtol=1e-5
    )
    # traced (jax) positions take the explicit-mask path and agree too
    traced = jit(lambda q, k, v, p: models.attend(q, k, v, mask, q_pos=p, k_pos=p, impl="xla"))(
        q, k, v, jnp.asarray(pos)
    )
    np.testing.assert_allclose(np.asarray(traced), np.asarray(ref), atol=1e-5, rtol=1e-5)


def test_head_groups_with_their_own_masks():
    """S^2-Attn: one MaskSpec per equal group of heads."""
    T, G = 48, 16
    masks = (MS(causal=True, block=G), MS(causal=True, block=G, block_shift=G // 2))
    q, k, v = _qkv(1, 2, T, T, 4, 8)
    pos = np.arange(T)
    fast = np.asarray(_attend(q, k, v, masks, q_pos=pos, k_pos=pos, impl="xla"))
    ref = np.asarray(_attend(q, k, v, masks, q_pos=pos, k_pos=pos, impl="reference"))
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=1e-5)
    for g, mask in enumerate(masks):
        heads = slice(2 * g, 2 * g + 2)
        expect = _numpy_attention(
            q[:, :, heads], k[:, :, heads], v[:, :, heads], mask.allowed(pos, pos)
        )
        np.testing.assert_allclose(fast[:, :, heads], expect, atol=1e-5, rtol=1e-5)


PREFIX_CASES = [
    # (mask, n, latent queries only)
    (MS(causal=True, prefix=20, prefix_causal=False), 32, False),  # V1 code
    (MS(causal=True, prefix=20, prefix_causal=True), 32, False),  # V1 clean
    (MS(causal=True, prefix=24, prefix_block=8, prefix_causal=False), 32, False),  # V2 code
    (MS(causal=True, prefix=24, prefix_block=12, prefix_causal=True), 36, False),  # V2 clean
    (MS(causal=True), 40, True),  # PerceiverAR layer 1: latents over all keys
]


@pytest.mark.parametrize("mask,n,latent_only", PREFIX_CASES)
def test_prefix_and_cross_masks_equal_reference(mask, n, latent_only):
    l = 8
    q_pos = np.arange(n - l, n) if latent_only else np.arange(n)
    k_pos = np.arange(n)
    q, k, v = _qkv(n, 2, len(q_pos), n, 2, 8)
    fast = np.asarray(_attend(q, k, v, mask, q_pos=q_pos, k_pos=k_pos, impl="xla"))
    ref = np.asarray(_attend(q, k, v, mask, q_pos=q_pos, k_pos=k_pos, impl="reference"))
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(
        ref, _numpy_attention(q, k, v, mask.allowed(q_pos, k_pos)), atol=1e-5, rtol=1e-5
    )


def _sub_jaxprs(params):
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def _max_intermediate_size(jaxpr) -> int:
    """Elements of the largest value computed anywhere in `jaxpr` (sub-jaxprs included)."""
    biggest = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            biggest = max(biggest, int(np.prod(getattr(var.aval, "shape", ()))))
        for sub in _sub_jaxprs(eqn.params):
            biggest = max(biggest, _max_intermediate_size(sub))
    return biggest


def test_blocked_path_never_builds_the_full_mask():
    B, T, H, D, s = 1, 512, 2, 8, 32
    q, k, v = _qkv(0, B, T, T, H, D)
    pos = np.arange(T)
    mask = MS(causal=True, block=s, blocks_back=1)
    jaxpr = jax.make_jaxpr(
        lambda q, k, v: models.attend(q, k, v, mask, q_pos=pos, k_pos=pos, impl="xla")
    )(q, k, v).jaxpr
    dense_logits = B * H * T * T
    assert _max_intermediate_size(jaxpr) <= dense_logits // 4
    ref = jax.make_jaxpr(
        lambda q, k, v: models.attend(q, k, v, mask, q_pos=pos, k_pos=pos, impl="reference")
    )(q, k, v).jaxpr
    assert _max_intermediate_size(ref) >= dense_logits  # the check above can fail


# ----------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("block", [None, 8])
def test_attention_dropout_needs_an_rng(block):
    mask = MS(causal=True, block=block, blocks_back=1)
    q, k, v = _qkv(2, 2, 32, 32, 2, 8)
    pos = np.arange(32)
    fns = {
        rate: jit(
            lambda r, rate=rate: models.attend(
                q, k, v, mask, q_pos=pos, k_pos=pos, dropout_rate=rate, rng=r
            )
        )
        for rate in (0.0, 0.3)
    }
    no_rng = jit(lambda: models.attend(q, k, v, mask, q_pos=pos, k_pos=pos, dropout_rate=0.3))
    plain = np.asarray(jit(lambda: models.attend(q, k, v, mask, q_pos=pos, k_pos=pos))())
    np.testing.assert_allclose(np.asarray(no_rng()), plain, atol=1e-6)  # no rng: no dropout
    np.testing.assert_allclose(np.asarray(fns[0.0](jax.random.key(0))), plain, atol=1e-6)
    a = np.asarray(fns[0.3](jax.random.key(0)))
    b = np.asarray(fns[0.3](jax.random.key(1)))
    assert np.abs(a - plain).max() > 1e-3
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(np.asarray(fns[0.3](jax.random.key(0))), a)


def test_model_dropout_active_only_with_rng():
    """A model with dropout (rate 0.05) is deterministic without an rng, random with one.
    (rate 0 with an rng: see test_attention_dropout_needs_an_rng.)"""
    cfg = make_config("llp", True)  # the code's dropout 0.05
    assert cfg.dropout == 0.05
    tokens = jnp.asarray(random_tokens(0, (1, cfg.seq_len), cfg.vocab_size))

    def runner(model):
        graphdef, state = nnx.split(model)
        plain = jit(lambda st, t: nnx.merge(graphdef, st)(t))
        noisy = jit(lambda st, t, r: nnx.merge(graphdef, st)(t, rng=r))
        return (
            lambda: np.asarray(plain(state, tokens)),
            lambda seed: np.asarray(noisy(state, tokens, jax.random.key(seed))),
        )

    plain, noisy = runner(models.build(cfg))
    base = plain()
    np.testing.assert_array_equal(plain(), base)
    a = noisy(0)
    assert np.abs(a - base).max() > 1e-3
    assert np.abs(noisy(1) - a).max() > 1e-3
    np.testing.assert_array_equal(noisy(0), a)


# ----------------------------------------------------------------------------- whole models
@pytest.mark.parametrize(
    "name,faithful,overrides",
    [
        ("llp", False, {}),
        ("llp", True, {"prev_segments": 2, "segment_len": 16}),
        ("s2attn", False, {}),
        ("s2attn", True, {"group_len": 16}),
    ],
    ids=["llp-clean", "llp-code-k2", "s2attn-clean", "s2attn-code-G16"],
)
def test_model_xla_equals_reference(name, faithful, overrides):
    cfg = make_config(name, faithful, **overrides)
    tokens = random_tokens(4, (2, cfg.seq_len), cfg.vocab_size)
    fast = np.asarray(jit_forward(models.build(cfg.replace(attention_impl="xla"), seed=5))(tokens))
    ref = np.asarray(
        jit_forward(models.build(cfg.replace(attention_impl="reference"), seed=5))(tokens)
    )
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.accelerator
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN attention needs a GPU")
@pytest.mark.parametrize("name", ["llp", "perceiver_ar"])
def test_model_cudnn_equals_reference(name):
    """GPU only (unverified on CPU-only CI): the cuDNN path under the same masks, bfloat16."""
    cfg = make_config(name, compute_dtype="bfloat16", d_model=128, num_heads=2)
    tokens = random_tokens(4, (2, cfg.seq_len), cfg.vocab_size)
    fast = np.asarray(
        jit_forward(models.build(cfg.replace(attention_impl="cudnn"), seed=5))(tokens)
    )
    ref = np.asarray(
        jit_forward(models.build(cfg.replace(attention_impl="reference"), seed=5))(tokens)
    )
    np.testing.assert_allclose(fast, ref, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("batch", [1, 3])
def test_dense_attention_in_bfloat16_matches_float32(batch, cpu_bf16_mode):
    """The explicit-mask path in bfloat16 (on CPU: head-major `matmul.head_scores/head_mix`
    with their hand-written backward, or widened to float32 on CPUs without bfloat16 units)
    against float32: values and gradients within bfloat16 rounding; on CPU the compiled
    gradient multiplies bfloat16 operands only (native) or float32 ones only."""
    from llp_jax.models import attention as A

    rng = np.random.default_rng(batch)
    q, k, v = (jnp.asarray(rng.normal(size=(batch, 24, 2, 16)), jnp.float32) for _ in range(3))
    mask = jnp.asarray(np.tril(np.ones((24, 24), bool)))

    def loss(dtype):
        def fn(q, k, v):
            out = A._dense(*(x.astype(dtype) for x in (q, k, v)), mask, 0.0, None)
            return jnp.sum(jnp.square(out.astype(jnp.float32)))

        return jax.jit(jax.value_and_grad(fn, (0, 1, 2)))

    (got, got_g), (want, want_g) = loss(jnp.bfloat16)(q, k, v), loss(jnp.float32)(q, k, v)
    np.testing.assert_allclose(got, want, rtol=2e-2)
    for a, b in zip(got_g, want_g):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=3e-2 * float(np.abs(b).max()))
    if jax.default_backend() == "cpu":
        compiled = loss(jnp.bfloat16).lower(q, k, v).compile().as_text()
        dots = compiled_dot_operand_types(compiled)
        want = ["bf16", "bf16"] if cpu_bf16_mode == "native" else ["f32", "f32"]
        assert dots and all(t == want for t in dots), dots  # an empty list: no check
