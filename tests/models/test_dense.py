"""`layers.dense`: one 2-D matmul (on CPU with a K > N weight entering transposed, so that the
weight gradient is formed as [N, K]) equals a plain `x @ w`, values and gradients — for every
shape class (K > N, K < N, K == N, several contracted axes), in bfloat16, and under every remat
policy the scanned layers use."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llp_jax.models import layers, matmul
from llp_jax.models.remat import REMAT_POLICIES
from tests.helpers.models import compiled_dot_operand_types


def _inputs(x_shape, w_shape, dtype=jnp.float32):
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, x_shape, jnp.float32).astype(dtype)
    w = (jax.random.normal(kw, w_shape, jnp.float32) * 0.1).astype(dtype)
    in_dims = len(w_shape) - 1 if len(w_shape) > 2 else 1
    out_shape = x_shape[: len(x_shape) - in_dims] + w_shape[in_dims:]
    g = jax.random.normal(kg, out_shape, jnp.float32).astype(dtype)
    return x, w, g, in_dims


def _plain(x, w, in_dims):
    return jnp.tensordot(x, w, axes=in_dims)


@pytest.mark.parametrize(
    "x_shape,w_shape",
    [
        ((2, 24, 64), (64, 16)),  # K > N: the transposed weight gradient
        ((2, 24, 16), (16, 64)),  # K < N
        ((3, 8, 32), (32, 32)),  # K == N
        ((2, 24, 4, 8), (4, 8, 16)),  # two contracted axes (the heads' output projection)
    ],
)
def test_dense_and_its_gradients_equal_autodiff(x_shape, w_shape):
    x, w, g, in_dims = _inputs(x_shape, w_shape)
    ours = jax.jit(lambda x, w: jax.vjp(lambda a, b: layers.dense(a, b, in_dims), x, w))
    plain = jax.jit(lambda x, w: jax.vjp(lambda a, b: _plain(a, b, in_dims), x, w))
    (y, back), (y_ref, back_ref) = ours(x, w), plain(x, w)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-5, atol=1e-5)
    for got, want in zip(back(g), back_ref(g)):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-4)


def test_dense_bfloat16_gradients_keep_their_dtype():
    x, w, g, _ = _inputs((4, 16, 64), (64, 16), jnp.bfloat16)
    _, back = jax.vjp(layers.dense, x, w)
    _, back_ref = jax.vjp(lambda a, b: _plain(a, b, 1), x, w)
    for got, want in zip(back(g), back_ref(g)):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_allclose(
            np.asarray(got, np.float32), np.asarray(want, np.float32), rtol=2e-2, atol=2e-2
        )


@pytest.mark.parametrize("policy", ["full", "dots", "dots_all"])
def test_dense_under_remat_policies(policy):
    """The feed-forward's two matmuls (K < N, then K > N) under jax.checkpoint: same gradients."""
    x, w1, _, _ = _inputs((2, 24, 16), (16, 64))
    _, w2, _, _ = _inputs((2, 24, 64), (64, 16))

    def ff(dense):
        return lambda x, w1, w2: jnp.sum(jnp.sin(dense(jax.nn.gelu(dense(x, w1)), w2)))

    ours = jax.checkpoint(ff(layers.dense), policy=REMAT_POLICIES[policy])
    want = jax.grad(ff(lambda a, b: a @ b), argnums=(0, 1, 2))(x, w1, w2)
    got = jax.jit(jax.grad(ours, argnums=(0, 1, 2)))(x, w1, w2)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_weight_gradient_is_transposed_on_cpu_only_when_k_exceeds_n():
    """The transposed weight shows as an optimisation barrier in the traced gradient (CPU only)."""
    if jax.default_backend() != "cpu":
        pytest.skip("the transposed form is CPU-only")

    def hlo(x_shape, w_shape):
        x, w, _, _ = _inputs(x_shape, w_shape)
        grad = jax.jit(jax.grad(lambda x, w: jnp.sum(layers.dense(x, w)), argnums=1))
        return grad.lower(x, w).as_text()

    assert "optimization_barrier" in hlo((2, 24, 64), (64, 16))
    assert "optimization_barrier" not in hlo((2, 24, 16), (16, 64))


def _eqns(jaxpr, primitive: str = "dot_general"):
    """Every equation of a primitive in a jaxpr, also inside sub-jaxprs (custom_vjp, pjit)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == primitive:
            yield eqn
        for param in eqn.params.values():
            sub = getattr(param, "jaxpr", param)
            if hasattr(sub, "eqns"):
                yield from _eqns(sub, primitive)


@pytest.mark.usefixtures("native_bf16")
@pytest.mark.parametrize("w_shape", [(64, 16), (16, 64)])
def test_dense_bfloat16_multiplies_bfloat16_into_float32(w_shape):
    """bfloat16 inputs: one dot of bfloat16 operands accumulating in float32 (then rounded), the
    form XLA:CPU gives YNNPACK's bfloat16 kernels (AMX). Without `preferred_element_type` the
    dot is bf16 -> bf16, which XLA:CPU upcasts to float32 operands; a transposed operand (the
    K > N barrier form) is refused as well. Checked on the traced and the compiled program."""
    x, w, _, _ = _inputs((2, 24, w_shape[0]), w_shape, jnp.bfloat16)
    (dot,) = _eqns(jax.make_jaxpr(layers.dense)(x, w).jaxpr)
    assert [v.aval.dtype for v in dot.invars] == [jnp.bfloat16, jnp.bfloat16]
    assert dot.params["preferred_element_type"] == jnp.float32
    assert dot.params["dimension_numbers"] == (((1,), (0,)), ((), ()))
    assert jax.jit(layers.dense)(x, w).dtype == jnp.bfloat16
    if jax.default_backend() == "cpu":
        compiled = jax.jit(layers.dense).lower(x, w).compile().as_text()
        assert f"f32[48,{w_shape[0]}]" not in compiled  # the activations never upcast
    want = np.asarray(x, np.float32).reshape(48, -1) @ np.asarray(w, np.float32)
    got = np.asarray(jax.jit(layers.dense)(x, w), np.float32).reshape(48, -1)
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)


def _plain_bf16(x, w, b=None):
    """The mixed-precision dense written plainly (autodiff's backward)."""
    y = jnp.dot(x, w, preferred_element_type=jnp.float32)
    return (y if b is None else y + b).astype(x.dtype)


def _squares(dense):
    return lambda x, w, b: jnp.sum(jnp.square(dense(x, w, b).astype(jnp.float32)))


@pytest.mark.usefixtures("native_bf16")
@pytest.mark.parametrize("w_shape", [(64, 16), (16, 64)])
def test_dense_bfloat16_backward_dots_stay_bfloat16_on_cpu(w_shape):
    """The gradient of a bfloat16 dense: both backward dots (dy @ w^T and x^T @ dy) multiply
    bfloat16 operands in the canonical, untransposed form, so XLA:CPU neither upcasts them to
    float32 nor refuses them to YNNPACK; the float32 bias's gradient is a float32 sum (a
    bfloat16 one compiles to a slow reduce-window). Autodiff's own backward (the plain form) fails this: its dots contract a
    transposed operand and compile to float32 matmuls."""
    if jax.default_backend() != "cpu":
        pytest.skip("the hand-written backward is CPU-only")
    x, w, _, _ = _inputs((2, 24, w_shape[0]), w_shape, jnp.bfloat16)
    b = jax.random.normal(jax.random.key(3), (w_shape[1],), jnp.float32)
    ours = lambda x, w, b: layers.dense(x, w, bias=b)  # noqa: E731
    grad = jax.jit(jax.grad(_squares(ours), argnums=(0, 1, 2)))
    traced = list(_eqns(jax.make_jaxpr(grad)(x, w, b).jaxpr))
    assert len(traced) == 3  # forward, dx, dw
    for eqn in traced:
        assert [v.aval.dtype for v in eqn.invars] == [jnp.bfloat16, jnp.bfloat16]
        assert eqn.params["dimension_numbers"] == (((1,), (0,)), ((), ()))
    compiled = grad.lower(x, w, b).compile().as_text()
    assert [t for t in compiled_dot_operand_types(compiled)] == [["bf16", "bf16"]] * 3
    sums = list(_eqns(jax.make_jaxpr(grad)(x, w, b).jaxpr, "reduce_sum"))
    assert sums and all(e.invars[0].aval.dtype == jnp.float32 for e in sums)
    plain = jax.jit(jax.grad(_squares(_plain_bf16), argnums=(0, 1, 2)))
    plain_types = compiled_dot_operand_types(plain.lower(x, w, b).compile().as_text())
    assert any(t != ["bf16", "bf16"] for t in plain_types)  # the check can fail
    for got, want in zip(grad(x, w, b), plain(x, w, b)):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(
            np.asarray(got, np.float32), np.asarray(want, np.float32), rtol=2e-2, atol=5e-2
        )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dense_adds_a_float32_bias_before_rounding(dtype):
    """`bias=` equals adding the bias after the matmul; in bfloat16 the float32 bias joins the
    float32 sum before the one rounding, and its gradient stays float32."""
    x, w, _, _ = _inputs((2, 24, 64), (64, 16), dtype)
    b = jax.random.normal(jax.random.key(3), (16,), jnp.float32)
    got = jax.jit(lambda x, w, b: layers.dense(x, w, bias=b))(x, w, b)
    want = _plain_bf16(x, w, b) if dtype == jnp.bfloat16 else _plain(x, w, 1) + b
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    grad_b = jax.grad(_squares(lambda x, w, b: layers.dense(x, w, bias=b)), argnums=2)(x, w, b)
    assert grad_b.dtype == jnp.float32


def test_dense_bfloat16_inside_shard_map_sums_the_weight_gradient(cpu_bf16_mode):
    """Inside `shard_map` with the weight and bias replicated and the activations split: the
    hand-written backward's weight and bias gradients (native bfloat16 or widened to float32)
    are summed over the devices, as autodiff's would be."""
    if jax.device_count() < 2:
        pytest.skip("needs two devices (XLA_FLAGS=--xla_force_host_platform_device_count)")
    mesh = jax.make_mesh((2,), ("s",))
    spec = jax.sharding.PartitionSpec
    x, w, _, _ = _inputs((8, 16), (16, 4), jnp.bfloat16)
    b = jnp.arange(4, dtype=jnp.float32)
    local = lambda x, w, b: _squares(lambda *a: layers.dense(*a[:2], bias=a[2]))(x, w, b)[None]  # noqa: E731

    def loss(x, w, b):
        split = jax.shard_map(local, mesh=mesh, in_specs=(spec("s"), spec(), spec()),
                              out_specs=spec("s"))  # fmt: skip
        return split(x, w, b).sum()

    with jax.set_mesh(mesh):
        xs = jax.device_put(x, jax.NamedSharding(mesh, spec("s")))
        got = jax.device_get(jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(xs, w, b))
    for a, want in zip(got, jax.grad(_squares(_plain_bf16), argnums=(0, 1, 2))(x, w, b)):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(want, np.float32),
                                   rtol=2e-2, atol=5e-2)  # fmt: skip


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("nt", [False, True])
def test_batched_matmuls_and_their_gradients(dtype, nt, cpu_bf16_mode):
    """`matmul.batched` (a @ b) and `matmul.batched_nt` (a @ b^T) over one batch axis equal
    the einsum, values and gradients; in bfloat16 on CPU every compiled dot of the gradient
    multiplies bfloat16 operands (the hand-written backward), or float32 ones on CPUs without
    bfloat16 units."""
    ka, kb = jax.random.split(jax.random.key(4))
    a = jax.random.normal(ka, (6, 24, 16), jnp.float32).astype(dtype)
    b = jax.random.normal(kb, (6, 32, 16) if nt else (6, 16, 32), jnp.float32).astype(dtype)
    spec = "zmk,znk->zmn" if nt else "zmk,zkn->zmn"
    ours = matmul.batched_nt if nt else matmul.batched

    def plain(a, b, out):
        return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32).astype(out)

    def loss(f):
        return lambda a, b: jnp.sum(jnp.sin(f(a, b, jnp.float32)))

    np.testing.assert_allclose(np.asarray(ours(a, b, jnp.float32)),
                               np.asarray(plain(a, b, jnp.float32)), rtol=1e-5, atol=1e-5)  # fmt: skip
    assert ours(a, b).dtype == dtype
    grad = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))
    tol = 2e-2 if dtype == jnp.bfloat16 else 1e-5
    for got, want in zip(grad(a, b), jax.grad(loss(plain), argnums=(0, 1))(a, b)):
        assert got.dtype == want.dtype == dtype
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                                   rtol=tol, atol=tol * 4)  # fmt: skip
    if dtype == jnp.bfloat16 and jax.default_backend() == "cpu" and cpu_bf16_mode == "float32":
        types = compiled_dot_operand_types(grad.lower(a, b).compile().as_text())
        assert types and all(t == ["f32", "f32"] for t in types), types
    elif dtype == jnp.bfloat16 and jax.default_backend() == "cpu":
        types = compiled_dot_operand_types(grad.lower(a, b).compile().as_text())
        assert types == [["bf16", "bf16"]] * 3
        autodiff = jax.jit(jax.grad(loss(plain), argnums=(0, 1))).lower(a, b).compile()
        assert compiled_dot_operand_types(autodiff.as_text()) != types  # the check can fail
