"""bfloat16 matmuls on a CPU without bfloat16 units run in float32 (`matmul.cpu_bf16_matmuls`):
how the CPU is read, and that a bfloat16 model then multiplies float32 operands only while its
loss and gradients stay those of the native bfloat16 forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.models import matmul
from tests.helpers.models import compiled_dot_operand_types, make_config, random_tokens

# Lines as the Linux kernel writes them (trimmed): a 2-core AMD EPYC with AVX2 only, an Intel
# Xeon with AMX, a Zen 4 EPYC with AVX512-BF16, an Arm Neoverse V1.
EPYC_AVX2 = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr fma cx16 avx avx2 sha_ni\n"
XEON_AMX = "flags\t\t: fpu avx2 avx512f avx512bw amx_bf16 amx_tile amx_int8\n"
ZEN4 = "flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
NEOVERSE = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 i8mm bf16\n"
NEOVERSE_N1 = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp\n"


@pytest.mark.parametrize("text,units", [
    (EPYC_AVX2, False), (XEON_AMX, True), (ZEN4, True), (NEOVERSE, True), (NEOVERSE_N1, False),
    ("model name\t: bf16 avx512_bf16 in a name is not a flag\n", False), ("", False),
])  # fmt: skip
def test_bf16_units_read_from_cpuinfo(text, units):
    assert matmul.bf16_units_in(text) is units


def test_the_environment_overrides_the_detection(monkeypatch):
    for choice in ("native", "float32"):
        monkeypatch.setenv(matmul.BF16_ENV, choice)
        assert matmul.cpu_bf16_matmuls() == choice
    monkeypatch.setenv(matmul.BF16_ENV, "bf16")
    with pytest.raises(ValueError, match="LLP_JAX_CPU_BF16='bf16': use native, float32"):
        matmul.cpu_bf16_matmuls()
    monkeypatch.delenv(matmul.BF16_ENV)
    with open("/proc/cpuinfo") as f:
        want = "native" if matmul.bf16_units_in(f.read()) else "float32"
    assert matmul.cpu_bf16_matmuls() == want


def _loss_and_grads(cfg, tokens):
    graphdef, params, rest = nnx.split(models.build(cfg, seed=0), nnx.Param, ...)

    def loss(p):
        model = nnx.merge(graphdef, p, rest)
        return model.nll_sum(tokens[:, :-1], tokens[:, 1:]) / tokens[:, 1:].size

    fn = jax.jit(jax.value_and_grad(loss))
    return fn(params), compiled_dot_operand_types(fn.lower(params).compile().as_text())


@pytest.mark.parametrize("name,faithful", [("llp", False), ("llp", True), ("transformer", False)])
def test_a_bfloat16_model_in_float32_mode_matches_the_native_forms(name, faithful, monkeypatch):
    """The whole loss (blocked or dense attention, RoPE, the fused cross-entropy head): in
    float32 mode every compiled dot multiplies float32 operands; in native mode (the check can
    fail) some multiply bfloat16 ones; losses and gradients agree to bfloat16 rounding."""
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU's bfloat16 matmul forms")
    cfg = make_config(name, faithful, compute_dtype="bfloat16", dropout=0.0)
    tokens = jnp.asarray(random_tokens(3, (2, cfg.seq_len + 1), cfg.vocab_size))
    out = {}
    for mode in ("native", "float32"):
        monkeypatch.setenv(matmul.BF16_ENV, mode)
        jax.clear_caches()
        out[mode] = _loss_and_grads(cfg, tokens)
    jax.clear_caches()
    (loss32, grads32), dots32 = out["float32"]
    (loss16, grads16), dots16 = out["native"]
    assert dots32 and all(t == ["f32", "f32"] for t in dots32), dots32
    assert any("bf16" in t for t in dots16), dots16
    np.testing.assert_allclose(float(loss32), float(loss16), rtol=5e-3)
    for a, b in zip(jax.tree.leaves(grads32), jax.tree.leaves(grads16)):
        assert a.dtype == b.dtype == jnp.float32
        scale = float(jnp.abs(b).max()) + 1e-6
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=5e-2 * scale)


def test_float32_mode_keeps_bfloat16_residuals(monkeypatch):
    """`in_float32`'s backward widens its bfloat16 inputs again rather than keeping float32
    copies: the gradient is autodiff's of the widened product, and what the forward saves for
    it is bfloat16."""
    monkeypatch.setenv(matmul.BF16_ENV, "float32")
    ka, kb = jax.random.split(jax.random.key(9))
    a = jax.random.normal(ka, (4, 32, 16), jnp.float32).astype(jnp.bfloat16)
    b = jax.random.normal(kb, (4, 16, 24), jnp.float32).astype(jnp.bfloat16)

    def loss(f):
        return lambda a, b: jnp.sum(jnp.sin(f(a, b).astype(jnp.float32)))

    def plain(a, b):  # autodiff through the widening: what the custom backward must equal
        return matmul.batched(a.astype(jnp.float32), b.astype(jnp.float32)).astype(a.dtype)

    got = jax.grad(loss(matmul.batched), argnums=(0, 1))(a, b)
    want = jax.grad(loss(plain), argnums=(0, 1))(a, b)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(w, np.float32))
    _, saved = jax.vjp(lambda a, b: matmul.in_float32(matmul.batched, a, b), a, b)
    residuals = [x for x in jax.tree.leaves(saved) if hasattr(x, "dtype") and x.ndim == 3]
    assert residuals and all(x.dtype == jnp.bfloat16 for x in residuals)
