"""The attention kernels behind `attend`: backend selection and clean fallbacks on CPU, the
cuDNN segment-window decomposition (run with jax's XLA kernel) and Pallas splash attention (in
interpret mode) against the explicit-mask reference, and no n x n buffer in the blocked path."""

from __future__ import annotations

import logging
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llp_jax import models
from llp_jax.models import attention
from llp_jax.models import attention_kernels as kernels

MS = models.MaskSpec


def _qkv(seed, B, Tq, Tk, H, D, dtype=jnp.float32):
    ks = jax.random.split(jax.random.key(seed), 3)
    q = jax.random.normal(ks[0], (B, Tq, H, D), dtype)
    k = jax.random.normal(ks[1], (B, Tk, H, D), dtype)
    v = jax.random.normal(ks[2], (B, Tk, H, D), dtype)
    return q, k, v


def _reference(q, k, v, mask, q_pos, k_pos):
    return attention.attend(q, k, v, mask, q_pos=q_pos, k_pos=k_pos, impl="reference")


BLOCK_CASES = [
    # (T, block, blocks_back, block_shift, offset, causal)
    (64, 16, 1, 0, 0, True),  # LLP, k = 1
    (50, 16, 2, 0, 7, True),  # k = 2, ragged, offset
    (37, 8, 0, 4, 13, True),  # S^2 shifted groups
    (64, 16, 0, 0, 0, True),  # S^2 unshifted: square causal blocks (is_causal path)
    (45, 10, 3, 3, 21, True),
    (48, 16, 1, 0, 0, False),  # non-causal window (all-true interior blocks)
]


# ----------------------------------------------------------------------------- selection
def test_resolve_impl_per_backend(caplog):
    assert attention.resolve_impl("xla", "cpu") == "xla"
    assert attention.resolve_impl("reference", "cpu") == "reference"
    assert attention.resolve_impl("auto", "cpu") == "xla"
    assert attention.resolve_impl("auto", "gpu") == "cudnn"
    assert attention.resolve_impl("cudnn", "gpu") == "cudnn"
    if kernels.splash_module() is not None:
        assert attention.resolve_impl("auto", "tpu") == "splash"
        assert attention.resolve_impl("splash", "tpu") == "splash"
    attention._warned.clear()
    with caplog.at_level(logging.WARNING, logger=attention.__name__):
        assert attention.resolve_impl("cudnn", "cpu") == "xla"
        assert attention.resolve_impl("cudnn", "cpu") == "xla"
        assert attention.resolve_impl("splash", "cpu") == "xla"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # one warning per reason, not per call
    assert "cudnn" in messages[0] and "splash" in messages[1]
    with pytest.raises(ValueError, match="impl="):
        attention.resolve_impl("flash", "cpu")


def test_cudnn_supported_reasons():
    q32 = jnp.zeros((1, 8, 2, 64), jnp.float32)
    assert "bfloat16" in kernels.cudnn_supported(q32)
    assert kernels.cudnn_supported(q32.astype(jnp.bfloat16)) is None
    assert "head size" in kernels.cudnn_supported(jnp.zeros((1, 8, 2, 12), jnp.bfloat16))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the CPU fallback")
@pytest.mark.parametrize("impl", ["cudnn", "splash", "auto"])
@pytest.mark.parametrize("T,block,back,shift,offset,causal", BLOCK_CASES[:3])
def test_fast_impls_fall_back_to_the_reference_on_cpu(impl, T, block, back, shift, offset, causal):
    mask = MS(causal=causal, block=block, blocks_back=back, block_shift=shift)
    q, k, v = _qkv(T, 2, T, T, 2, 8)
    pos = np.arange(offset, offset + T)
    got = jax.jit(lambda q, k, v: models.attend(q, k, v, mask, q_pos=pos, k_pos=pos, impl=impl))(
        q, k, v
    )
    np.testing.assert_allclose(got, _reference(q, k, v, mask, pos, pos), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the CPU fallback")
def test_model_with_cudnn_impl_runs_on_cpu_like_the_reference():
    cfg = models.tiny("llp")
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, cfg.seq_len)), jnp.int32)
    fast = models.build(cfg.replace(attention_impl="cudnn"), seed=3)(tokens)
    ref = models.build(cfg.replace(attention_impl="reference"), seed=3)(tokens)
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- cuDNN windows
@pytest.mark.parametrize("T,block,back,shift,offset,causal", BLOCK_CASES)
def test_cudnn_window_decomposition_equals_reference(T, block, back, shift, offset, causal):
    """The GPU path's segment windows and per-run masks, executed by jax's XLA kernel."""
    mask = MS(causal=causal, block=block, blocks_back=back, block_shift=shift)
    q, k, v = _qkv(T + 1, 2, T, T, 2, 8)
    pos = np.arange(offset, offset + T)
    runs = attention.Windows.make(mask, offset, T).runs(mask)
    assert len(runs) <= back + 3  # first blocks, the interior, a ragged end: few kernel calls
    got = jax.jit(
        lambda q, k, v: kernels.cudnn_attention(q, k, v, mask, pos, pos, implementation="xla")
    )(q, k, v)
    np.testing.assert_allclose(got, _reference(q, k, v, mask, pos, pos), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "mask,n,latent_only",
    [
        (MS(causal=True), 40, False),
        (MS(causal=True), 40, True),
        (MS(prefix=24, prefix_block=8), 32, False),
    ],
    ids=["causal", "perceiver-cross", "v2-history"],
)
def test_cudnn_dense_masks_equal_reference(mask, n, latent_only):
    q_pos = np.arange(n - 8, n) if latent_only else np.arange(n)
    k_pos = np.arange(n)
    q, k, v = _qkv(n, 2, len(q_pos), n, 2, 8)
    got = kernels.cudnn_attention(q, k, v, mask, q_pos, k_pos, implementation="xla")
    np.testing.assert_allclose(got, _reference(q, k, v, mask, q_pos, k_pos), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- splash (TPU)
needs_splash = pytest.mark.skipif(kernels.splash_module() is None, reason="no Pallas splash in jax")

SPLASH_CASES = [
    (MS(causal=True, block=128, blocks_back=1), 0, 512, 0, 512),  # LLP
    (MS(causal=True, block=128, block_shift=64), 0, 256, 0, 256),  # S^2 shifted heads
    (MS(causal=True, prefix=256, prefix_block=128, prefix_causal=False), 0, 384, 0, 384),  # V2
    (MS(causal=True), 256, 128, 0, 384),  # PerceiverAR layer 1: latents over all keys
]


@needs_splash
@pytest.mark.parametrize("mask,q0,Tq,k0,Tk", SPLASH_CASES, ids=["llp", "s2", "v2", "cross"])
def test_splash_mask_is_the_maskspec(mask, q0, Tq, k0, Tk):
    lazy = kernels.splash_mask(mask, q0, k0, Tq, Tk)
    want = mask.allowed(np.arange(q0, q0 + Tq), np.arange(k0, k0 + Tk))
    np.testing.assert_array_equal(lazy[:, :], want)
    np.testing.assert_array_equal(lazy[0:128, 128:256], want[0:128, 128:256])


@needs_splash
@pytest.mark.parametrize(
    "mask,q0,Tq,k0,Tk", SPLASH_CASES[:2] + SPLASH_CASES[3:], ids=["llp", "s2", "cross"]
)
def test_splash_kernel_in_interpret_mode_equals_reference(mask, q0, Tq, k0, Tk):
    """The TPU kernel itself, interpreted on CPU: forward and gradients."""
    q, k, v = _qkv(Tq, 1, Tq, Tk, 2, 64)
    q_pos, k_pos = np.arange(q0, q0 + Tq), np.arange(k0, k0 + Tk)
    assert kernels.splash_supported(q, k, q_pos, k_pos) is None

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v) ** 2)

    splash = lambda q, k, v: kernels.splash_attention(q, k, v, mask, q_pos, k_pos, interpret=True)
    ref = lambda q, k, v: _reference(q, k, v, mask, q_pos, k_pos)
    np.testing.assert_allclose(splash(q, k, v), ref(q, k, v), atol=2e-5, rtol=2e-5)
    g_fast = jax.grad(loss(splash), argnums=(0, 1, 2))(q, k, v)
    g_ref = jax.grad(loss(ref), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_fast, g_ref):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_splash_unsupported_shapes_say_why():
    q, k, _ = _qkv(0, 1, 100, 100, 2, 8)
    pos = np.arange(100)
    if kernels.splash_module() is not None:
        assert "divisible by 128" in kernels.splash_supported(q, k, pos, pos)
    assert kernels.splash_supported(q, k, jnp.asarray(pos), pos) is not None


# ----------------------------------------------------------------------------- no n x n buffers
def _largest_hlo_buffer(hlo_text: str) -> int:
    """Elements of the largest array shape written anywhere in an HLO module's text."""
    biggest = 0
    for dims in re.findall(r"\b(?:f32|f16|bf16|pred|s32|u32|s8|u8)\[([\d,]*)\]", hlo_text):
        if dims:
            biggest = max(biggest, int(np.prod([int(d) for d in dims.split(",")])))
    return biggest


@pytest.mark.parametrize("path", ["xla", "cudnn-decomposition"])
def test_blocked_path_compiles_without_n_by_n_buffers(path):
    """Forward and gradient of segment attention (s = 64) at n = 2048 and 4096: no array in the
    compiled program comes near n x n entries and the buffer plan grows linearly with n, while
    the reference path holds n x n matrices and grows quadratically."""
    s, H, D = 64, 2, 16
    mask = MS(causal=True, block=s, blocks_back=1)

    def compiled(n, reference=False):
        pos = np.arange(n)
        shape = jax.ShapeDtypeStruct((1, n, H, D), jnp.float32)
        if reference:
            fn = lambda q, k, v: _reference(q, k, v, mask, pos, pos)
        elif path == "xla":
            fn = lambda q, k, v: models.attend(q, k, v, mask, q_pos=pos, k_pos=pos, impl="xla")
        else:
            fn = lambda q, k, v: kernels.cudnn_attention(
                q, k, v, mask, pos, pos, implementation="xla"
            )
        loss = lambda q, k, v: jnp.sum(fn(q, k, v) ** 2)
        grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        return grad.lower(shape, shape, shape).compile()

    n = 4096
    small, big = compiled(n // 2), compiled(n)
    assert _largest_hlo_buffer(big.as_text()) <= n * n // 8  # the scores: n * 2s * H
    temps = [c.memory_analysis().temp_size_in_bytes for c in (small, big)]
    assert temps[1] < 2.5 * temps[0] and temps[1] < 4 * n * n // 2, temps
    ref_small, ref_big = compiled(n // 2, True), compiled(n, True)
    assert _largest_hlo_buffer(ref_big.as_text()) >= n * n  # the checks above can fail
    ref_temps = [c.memory_analysis().temp_size_in_bytes for c in (ref_small, ref_big)]
    assert ref_temps[1] > 3.5 * ref_temps[0] and ref_temps[1] > 4 * n * n, ref_temps


# ----------------------------------------------------------------------------- recording
def test_recording_sees_top_level_calls_only():
    q, k, v = _qkv(0, 1, 16, 16, 2, 4)
    pos = np.arange(16)
    masks = (MS(block=4), MS(block=4, block_shift=2))
    with attention.recording() as calls:
        models.attend(q, k, v, masks, q_pos=pos, k_pos=pos)
        models.attend(q, k, v, MS(), q_pos=pos, k_pos=pos)
    assert [c[0] for c in calls] == [masks, MS()]
    models.attend(q, k, v, MS(), q_pos=pos, k_pos=pos)
    assert len(calls) == 2  # closed


# ----------------------------------------------------------------------------- chunked dense path
CHUNK_CASES = [
    (MS(causal=True), np.arange(100), np.arange(100)),  # transformer
    (MS(causal=True), np.arange(60, 100), np.arange(100)),  # PerceiverAR layer 1
    (
        MS(causal=True, prefix=60, prefix_block=20, prefix_causal=False),
        np.arange(100),
        np.arange(100),
    ),
    (MS(causal=True, prefix=60), np.arange(100), np.arange(100)),  # V1 clean
]


@pytest.mark.parametrize("mask,q_pos,k_pos", CHUNK_CASES, ids=["causal", "cross", "v2", "v1"])
def test_chunked_dense_path_equals_reference(monkeypatch, mask, q_pos, k_pos):
    """Long dense masks run in query chunks (here forced at n = 100 with chunks of 16): values and
    gradients agree with the reference; dropout stays a function of the rng."""
    monkeypatch.setattr(attention, "CHUNK_ELEMENTS", 1024)
    monkeypatch.setattr(attention, "CHUNK_MIN_QUERIES", 16)
    q, k, v = _qkv(7, 2, len(q_pos), len(k_pos), 2, 8)

    def loss(impl, rate=0.0, rng=None):
        return lambda q, k, v: jnp.sum(
            attention.attend(
                q, k, v, mask, q_pos=q_pos, k_pos=k_pos, impl=impl, dropout_rate=rate, rng=rng
            )
            ** 2
        )

    fast, ref = (
        jax.jit(jax.value_and_grad(loss("xla"), argnums=(0, 1, 2))),
        jax.value_and_grad(loss("reference"), argnums=(0, 1, 2)),
    )
    (lf, gf), (lr, gr) = fast(q, k, v), ref(q, k, v)
    np.testing.assert_allclose(lf, lr, rtol=1e-5)
    for a, b in zip(gf, gr):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-5)
    drop = lambda seed: loss("xla", 0.3, jax.random.key(seed))(q, k, v)
    assert drop(0) == drop(0) and drop(0) != drop(1) and drop(0) != lf


def test_chunked_dense_path_halves_the_plan():
    """A causal n = 8192 self-attention (forward and gradient) in chunks: causal chunks skip
    the keys they cannot see, so its buffer plan is about half the unchunked reference's."""
    n = 8192
    pos = np.arange(n)
    shape = jax.ShapeDtypeStruct((1, n, 1, 16), jnp.float32)

    def plan(impl):
        loss = lambda q, k, v: jnp.sum(
            attention.attend(q, k, v, MS(causal=True), q_pos=pos, k_pos=pos, impl=impl) ** 2
        )
        grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        return grad.lower(shape, shape, shape).compile().memory_analysis().temp_size_in_bytes

    assert plan("xla") < 0.6 * plan("reference")
