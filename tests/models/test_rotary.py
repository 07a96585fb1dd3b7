"""RoPE angles are exact at any position (static and traced), so the rotation's relative property
holds at offsets of 10^7 and 10^9 and LLP streams far into a long text as it does at its start;
the rotation keeps norms and pairs channels as the authors do."""

from __future__ import annotations

import decimal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llp_jax import models
from llp_jax.models import rotary
from tests.helpers.models import compiled_dot_operand_types, jit, make_config, random_tokens

POSITIONS = np.array([0, 1, 63, 2047, 10**6, 5 * 10**6, 10**7, 10**9, 2**31 - 1, -1, -7 * 10**6])


def _exact_angles(positions, head_dim, theta):
    """position * frequency reduced to [-pi, pi) with 60-digit decimal arithmetic."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        out = []
        for p in positions:
            row = []
            for f in rotary.inv_freq(head_dim, theta):
                turns = decimal.Decimal(int(p)) * decimal.Decimal(float(f)) / rotary._TWO_PI
                turns -= turns.to_integral_value(rounding=decimal.ROUND_HALF_EVEN)
                row.append(float(turns * rotary._TWO_PI))
            out.append(row)
    return np.array(out)


@pytest.mark.parametrize(
    "head_dim,theta",
    # A base below ~0.12 gives frequencies of a turn or more per position: rope_theta=0.1 at
    # head_dim 16 was an OverflowError traceback from the traced angles' fixed-point table.
    [(16, 10000.0), (64, 10000.0), (8, 500000.0), (16, 0.1), (16, 1e-30), (64, 0.05)],
)
def test_angles_are_exact_at_every_position(head_dim, theta):
    exact = _exact_angles(POSITIONS, head_dim, theta)
    wrap = lambda a: (a + np.pi) % (2 * np.pi) - np.pi  # noqa: E731
    static = np.asarray(rotary.rope_angles(POSITIONS, head_dim, theta))
    traced = np.asarray(
        jax.jit(lambda p: rotary.rope_angles(p, head_dim, theta))(jnp.asarray(POSITIONS, jnp.int32))
    )
    assert np.abs(wrap(static - exact)).max() < 3e-7
    assert np.abs(wrap(traced - exact)).max() < 3e-7
    # The plain float32 product the authors use is ~0.1 rad off at 10^7 (why this exists).
    naive = POSITIONS.astype(np.float32)[:, None] * rotary.inv_freq(head_dim, theta)[None]
    assert np.abs(wrap(naive.astype(np.float64) - exact)).max() > 1e-2


@pytest.mark.parametrize("offset", [10**7, 10**9])
@pytest.mark.parametrize("traced", [False, True])
def test_scores_depend_only_on_relative_positions(offset, traced):
    key = jax.random.split(jax.random.key(0), 2)
    q = jax.random.normal(key[0], (1, 8, 2, 16))
    k = jax.random.normal(key[1], (1, 8, 2, 16))
    pos = np.arange(100, 108)

    def scores(p):
        p = jnp.asarray(p, jnp.int32) if traced else p
        rot = lambda x, p: rotary.apply_rope(x, p)  # noqa: E731
        return np.asarray(jnp.einsum("bqhd,bkhd->bhqk", rot(q, p), rot(k, p[::-1])))

    np.testing.assert_allclose(scores(pos + offset), scores(pos), rtol=0, atol=2e-5)


@pytest.mark.parametrize("offset", [10**7, 10**9])
def test_llp_streams_a_segment_far_into_a_stream_as_at_its_start(offset):
    """Clean LLP (RoPE rotates queries and keys only) is translation invariant: a stream that
    starts at absolute position 10^7 or 10^9 gives the logits of one starting at 0."""
    cfg = make_config("llp", num_layers=3)
    model = models.build(cfg, seed=3)
    tokens = random_tokens(0, (2, 3 * cfg.segment_len), cfg.vocab_size)
    run = jit(lambda t, s: model.stream(t, s))
    at_zero, _ = run(tokens, model.init_stream(2))
    far, state = run(tokens, model.init_stream(2, start=offset))
    np.testing.assert_allclose(np.asarray(far), np.asarray(at_zero), rtol=0, atol=1e-5)
    assert int(state["segment"]) == offset // cfg.segment_len + 3


def test_a_stream_start_must_fall_on_a_segment_boundary():
    model = models.build(make_config("llp"))
    with pytest.raises(models.ConfigError, match="multiple of segment_len"):
        model.init_stream(1, start=5)


def test_rope_is_relative():
    T, H, D = 16, 2, 8
    ks = jax.random.split(jax.random.key(3), 2)
    q = jax.random.normal(ks[0], (1, T, H, D))
    k = jax.random.normal(ks[1], (1, T, H, D))
    pos = np.arange(T)

    def scores(offset):
        qr = rotary.apply_rope(q, pos + offset)
        kr = rotary.apply_rope(k, pos + offset)
        return np.asarray(jnp.einsum("bqhd,bkhd->bhqk", qr, kr))

    base = scores(0)
    for offset in (1, 17, 1000):
        np.testing.assert_allclose(scores(offset), base, atol=2e-4, rtol=1e-4)
    # rotations keep norms, and a nonzero rotation does change q itself
    qr = rotary.apply_rope(q, pos + 5)
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(qr), axis=-1), np.linalg.norm(np.asarray(q), axis=-1), rtol=1e-5
    )
    assert np.abs(np.asarray(qr - q)).max() > 1e-2
    # but shifting only the queries changes the scores
    shifted = np.asarray(
        jnp.einsum("bqhd,bkhd->bhqk", rotary.apply_rope(q, pos + 3), rotary.apply_rope(k, pos))
    )
    assert np.abs(shifted - base).max() > 1e-2


def test_rope_interleaved_pairs():
    """Channels (0,1), (2,3), ... rotate by position * theta^(-2i/D) (the authors' layout)."""
    x = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    p, theta = 3.0, 10000.0
    got = np.asarray(rotary.apply_rope(x, np.array([p]), theta)).ravel()
    a0, a1 = p, p * theta**-0.5
    want = [
        np.cos(a0) - 2 * np.sin(a0),
        np.sin(a0) + 2 * np.cos(a0),
        3 * np.cos(a1) - 4 * np.sin(a1),
        3 * np.sin(a1) + 4 * np.cos(a1),
    ]
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(rotary.apply_rope(x, np.array([0]))).ravel(), [1, 2, 3, 4]
    )


@pytest.mark.parametrize("traced", [False, True])
def test_bfloat16_rope_equals_float32_and_its_gradient_multiplies_bfloat16(traced, cpu_bf16_mode):
    """bfloat16 on CPU with bfloat16 units takes the matmul form (x * cos + (x @ R) * sin),
    without them the float32 form: either way its values equal the float32 rotation of the
    same inputs rounded to bfloat16, its gradient matches float32's to bfloat16 rounding, and
    the compiled gradient's dots multiply bfloat16 operands (native) or there are none."""
    B, T, H, D = 2, 40, 3, 16
    kx, kg = jax.random.split(jax.random.key(7))
    x = jax.random.normal(kx, (B, T, H, D), jnp.float32).astype(jnp.bfloat16)
    g = jax.random.normal(kg, (B, T, H, D), jnp.float32).astype(jnp.bfloat16)
    pos = jnp.arange(T) + 10**6 if traced else np.arange(T) + 5
    rope = lambda x: rotary.apply_rope(x, pos)  # noqa: E731
    want, want_vjp = jax.vjp(rope, x.astype(jnp.float32))
    got, got_vjp = jax.vjp(rope, x)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(got, np.float32),
                                  np.asarray(want.astype(jnp.bfloat16), np.float32))  # fmt: skip
    (dx,), (dx_want,) = got_vjp(g), want_vjp(g.astype(jnp.float32))
    assert dx.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(dx, np.float32), np.asarray(dx_want),
                               rtol=2e-2, atol=2e-2)  # fmt: skip
    if jax.default_backend() == "cpu":
        grad = jax.jit(lambda x: jax.grad(lambda x: jnp.sum(rope(x).astype(jnp.float32) ** 2))(x))
        dots = compiled_dot_operand_types(grad.lower(x).compile().as_text())
        if cpu_bf16_mode == "native":
            assert dots and all(t == ["bf16", "bf16"] for t in dots), dots
        else:
            assert dots == []


def test_bfloat16_rope_inside_shard_map():
    """The bfloat16 form's custom gradient type-checks inside `shard_map` (the tables are
    replicated, x is split) and gives the gradient of the plain computation."""
    if jax.device_count() < 2:
        pytest.skip("needs two devices (XLA_FLAGS=--xla_force_host_platform_device_count)")
    mesh = jax.make_mesh((2,), ("s",))
    spec = jax.sharding.PartitionSpec
    x = jax.random.normal(jax.random.key(8), (4, 24, 2, 8), jnp.float32).astype(jnp.bfloat16)
    pos = np.arange(24)
    square = lambda x: jnp.sum(rotary.apply_rope(x, pos).astype(jnp.float32) ** 2)  # noqa: E731

    def loss(x):
        local = lambda x: square(x)[None]  # noqa: E731
        return jax.shard_map(local, mesh=mesh, in_specs=spec("s"), out_specs=spec("s"))(x).sum()

    with jax.set_mesh(mesh):
        xs = jax.device_put(x, jax.NamedSharding(mesh, spec("s")))
        got = jax.device_get(jax.jit(jax.grad(loss))(xs))
    np.testing.assert_allclose(np.asarray(got, np.float32),
                               np.asarray(jax.grad(square)(x), np.float32), rtol=2e-2, atol=2e-2)  # fmt: skip
