"""Train config, schedules, the weight-decay mask, AdamW, gradient accumulation, compute casting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from llp_jax.training import optimizer as opt_lib
from llp_jax.training import train_step
from llp_jax.training.config import TrainConfig, default_train_config
from tests.helpers.standin import lm_loss_fn, make_standin


def flat(tree):
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def test_default_train_config_fields():
    tc = default_train_config()
    for field in (
        "batch_size",
        "num_steps",
        "learning_rate",
        "schedule",
        "warmup_steps",
        "halve_every",
        "min_lr_ratio",
        "b1",
        "b2",
        "weight_decay",
        "clip_norm",
        "grad_accum_steps",
        "eval_every",
        "eval_batches",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "seed",
    ):
        assert field in tc, field
    assert (tc.b1, tc.b2) == (0.9, 0.95)
    assert tc.schedule in opt_lib.SCHEDULES


def test_cosine_schedule_warms_up_then_decays():
    tc = default_train_config()
    tc.update(learning_rate=1.0, schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    lr = opt_lib.make_schedule(tc, num_train_steps=110)
    values = np.array([float(lr(s)) for s in range(0, 130)])
    np.testing.assert_allclose(values[:10], np.arange(1, 11) / 10, rtol=1e-6)
    assert np.all(np.diff(values[:10]) > 0)
    np.testing.assert_allclose(values[10], 1.0, rtol=1e-6)
    np.testing.assert_allclose(values[60], 0.55, rtol=1e-6)  # half-way: midpoint of 1 and 0.1
    np.testing.assert_allclose(values[110:], 0.1, rtol=1e-6)
    assert np.all(np.diff(values[10:111]) <= 1e-7)


def test_a_warm_up_longer_than_the_run_is_noted_with_the_rate_it_reaches():
    tc = TrainConfig(learning_rate=1.0, num_steps=20, warmup_steps=80).validate()
    (note,) = tc.notes()
    assert "warmup_steps=80 is more than num_steps=20" in note and "only 25% of it" in note
    assert float(opt_lib.make_schedule(tc)(tc.num_steps - 1)) == pytest.approx(0.25)  # the last
    assert TrainConfig(num_steps=80, warmup_steps=80).notes() == []
    assert TrainConfig(num_steps=20, warmup_steps=80, schedule="constant").notes() == []


def test_step_halving_and_constant_schedules():
    tc = default_train_config()
    tc.update(learning_rate=0.5, schedule="step_halving", halve_every=100, warmup_steps=1000)
    lr = opt_lib.make_schedule(tc)
    got = [float(lr(s)) for s in (0, 1, 99, 100, 199, 200, 250, 1000)]
    np.testing.assert_allclose(got, [0.5, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.5 / 2**10])
    tc.schedule = "constant"
    assert float(opt_lib.make_schedule(tc)(12345)) == 0.5
    tc.schedule = "linear"
    with pytest.raises(ValueError, match="schedule"):
        opt_lib.make_schedule(tc)


def test_weight_decay_mask_on_a_real_nnx_state():
    state = nnx.state(make_standin(), nnx.Param)
    mask = flat(opt_lib.weight_decay_mask(state))
    assert mask == {
        "blocks/w_in": True,  # stacked [layers, embed, mlp] matrices
        "blocks/w_out": True,
        "blocks/b_in": False,  # stacked bias: [layers, mlp] is 2-D but still a vector per layer
        "blocks/scale": False,  # LayerNorm-style scale
        "embed": False,  # token embedding
        "head_w": True,  # untied output projection [embed, vocab] is a Linear weight
        "head_b": False,
    }


def test_weight_decay_mask_on_plain_arrays_uses_names_and_ndim():
    params = {
        "token_embed": jnp.ones((5, 3)),
        "embed_proj": jnp.ones((3, 3)),
        "ln": {"scale": jnp.ones(3), "bias": jnp.ones(3)},
        "w": jnp.ones((3, 4)),
        "b": jnp.ones(4),
        "nnx_embed": {"embedding": jnp.ones((5, 3))},
    }
    assert flat(opt_lib.weight_decay_mask(params)) == {
        "token_embed": False,
        "embed_proj": True,
        "ln/scale": False,
        "ln/bias": False,
        "w": True,
        "b": False,
        "nnx_embed/embedding": False,
    }


def test_adamw_decays_only_masked_params_with_nnx_optimizer():
    model = make_standin()
    tc = default_train_config()
    tc.update(learning_rate=0.1, weight_decay=0.5, warmup_steps=0, schedule="constant")
    params = nnx.state(model, nnx.Param)
    tx = opt_lib.make_optimizer(tc, 10, decay_mask=opt_lib.weight_decay_mask(params))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    before = flat(nnx.to_pure_dict(nnx.clone(params)))
    # Zero gradients: Adam's step is 0, so only decoupled weight decay moves a parameter
    # (by lr * wd * p) -- exactly the masked ones.
    optimizer.update(model, jax.tree.map(jnp.zeros_like, params))
    after = flat(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    mask = flat(opt_lib.weight_decay_mask(params))
    for name, decayed in mask.items():
        expected = before[name] * (1 - 0.1 * 0.5) if decayed else before[name]
        np.testing.assert_allclose(after[name], expected, rtol=1e-6, err_msg=name)


def test_clipping_bounds_the_update():
    tc = default_train_config()
    tc.update(
        learning_rate=1.0,
        schedule="constant",
        weight_decay=0.0,
        clip_norm=1.0,
        b1=0.0,
        b2=0.0,
        eps=0.0,
    )
    tx = opt_lib.make_optimizer(tc)
    params = {"w": jnp.ones((2, 2))}
    updates, _ = tx.update({"w": jnp.full((2, 2), 1e6)}, tx.init(params), params)
    # With b1=b2=eps=0, Adam's step is sign(g) whatever the norm; clipping must not break that.
    np.testing.assert_allclose(updates["w"], -1.0, rtol=1e-5)


def make_batch(batch_size=8, length=5, vocab=16, seed=0):
    tokens = jax.random.randint(jax.random.key(seed), (batch_size, length + 1), 0, vocab)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}


@pytest.mark.parametrize("k", [2, 4])
def test_gradient_accumulation_equals_the_big_batch(k):
    graphdef, params = nnx.split(make_standin())
    loss_fn = lm_loss_fn(graphdef)
    batch = make_batch()
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, None)
    accumulate = jax.jit(train_step.accumulate_gradients, static_argnums=(0, 4))
    (loss_k, aux_k), grads_k = accumulate(loss_fn, params, batch, None, k)
    np.testing.assert_allclose(loss_k, loss, rtol=1e-5)
    np.testing.assert_allclose(aux_k["accuracy"], aux["accuracy"], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        nnx.to_pure_dict(grads_k),
        nnx.to_pure_dict(grads),
    )


def test_gradient_accumulation_with_dropout_and_bad_split():
    graphdef, params = nnx.split(make_standin())
    loss_fn = lm_loss_fn(graphdef)
    rng = jax.random.key(1)
    (loss, _), grads = train_step.accumulate_gradients(loss_fn, params, make_batch(), rng, 2)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    with pytest.raises(ValueError, match="divisible"):
        train_step.accumulate_gradients(loss_fn, params, make_batch(batch_size=6), None, 4)
