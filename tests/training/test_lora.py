"""`train.lora_rank`: LoRA as an optax transformation (training/lora.py).

Checked against the parametrisation written out, not against the chain rule lora.py uses: the
same inner optimizer trained on (A, B) with jax.grad through W0 + s A B must give the same
merged weights; the update of every projection is of rank <= r; what is frozen stays put; and a
run fine-tuned with LoRA through the trainer saves, resumes and evaluates like any other."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.training import TrainConfig, finetune, lora
from llp_jax.training.optimizer import make_optimizer
from llp_jax.training.train_step import next_token_loss

RANK = 2


def _setup(name="llp", trainable="longlora", **train):
    cfg = models.tiny(name)
    graphdef, params = nnx.split(models.build(cfg, seed=0))
    train = TrainConfig(trainable=trainable, lora_rank=RANK, learning_rate=1e-2, warmup_steps=1,
                        num_steps=10, **train)  # fmt: skip
    inner = make_optimizer(train, train.num_steps)
    labels = lora.mark(params, finetune.trainable_labels(params, trainable), RANK)
    tx, _ = finetune.optimizer(inner, params, train)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.vocab_size, (2, cfg.seq_len + 1)).astype(np.int32)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
    return cfg, graphdef, params, labels, inner, tx, batch, train


def _loss(graphdef, batch):
    return lambda params: next_token_loss(graphdef, params, batch, None)[0]


@pytest.mark.parametrize("name,optimizer", [("llp", "adamw"), ("enhanced_v3", "adamw"),
                                            ("llp", "sgd")])  # fmt: skip
def test_lora_equals_training_the_factors_of_the_written_out_parametrisation(name, optimizer):
    _, graphdef, params0, labels, inner, tx, batch, train = _setup(name)
    if optimizer == "sgd":  # linear in the gradients: the two must agree to float rounding
        inner = optax.sgd(0.5)
        tx = lora.lora(inner, labels, rank=RANK, alpha=train.lora_alpha, seed=train.seed)
    tolerance = 1e-6 if optimizer == "sgd" else 1e-4
    loss = _loss(graphdef, batch)
    scale = train.lora_alpha / RANK

    # Ours: full gradients of W, the transformation.
    params, state = params0, tx.init(params0)
    factors0 = state.factors
    for _ in range(3):
        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)

    # Written out: W = W0 + s A B, jax.grad with respect to A, B and the fully trained leaves.
    def split(label, variable, f):
        if label == "frozen":
            return optax.MaskedNode()
        return f if label == lora.LORA else variable

    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    trained = jax.tree.map(split, labels, params0, factors0, is_leaf=is_var)

    def assemble(trained):
        def pick(label, variable, t, f0):
            if label == "frozen":
                return variable
            if label == lora.LORA:
                w0 = variable.get_value()
                return variable.replace(w0 + (scale * (t["a"] @ t["b"])).reshape(w0.shape))
            return t

        return jax.tree.map(pick, labels, params0, trained, factors0, is_leaf=is_var)

    written_loss = lambda t: loss(assemble(t))  # noqa: E731
    opt_state = inner.init(trained)
    for _ in range(3):
        g = jax.grad(written_loss)(trained)
        steps, opt_state = inner.update(g, opt_state, trained)
        trained = optax.apply_updates(trained, steps)
    expected = assemble(trained)

    flat = lambda t: dict(jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(t)))  # noqa: E731
    ours, theirs, start = flat(params), flat(expected), flat(params0)
    # Adam divides by the gradients' root mean square, so where a gradient is ~0 (A's, while B
    # is still ~0) float rounding of the two formulations can move an update by a fraction of a
    # step (lr = 1e-2): 1e-4 is 1% of one step, while a wrong gradient or scale moves weights by
    # whole steps. SGD has no such amplification.
    moved = 0.0
    for path, value in ours.items():
        np.testing.assert_allclose(value, theirs[path], rtol=0, atol=tolerance, err_msg=str(path))
        moved = max(moved, float(np.abs(value - start[path]).max()))
    assert moved > 1e-2, moved
    if optimizer != "sgd":
        return
    # The factors the transformation carries are the written-out ones.
    for ours_f, theirs_f in zip(jax.tree.leaves(state.factors), jax.tree.leaves(
            jax.tree.map(lambda l, t: t if l == lora.LORA else optax.MaskedNode(), labels, trained,
                         is_leaf=is_var)), strict=True):  # fmt: skip
        np.testing.assert_allclose(ours_f, theirs_f, rtol=0, atol=tolerance)


def test_updates_are_low_rank_and_frozen_parameters_stay_put():
    _, graphdef, params0, labels, _, tx, batch, _ = _setup()
    loss = _loss(graphdef, batch)
    params, state = params0, tx.init(params0)
    for _ in range(4):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    seen = {"lora": 0, "frozen": 0, "train": 0}

    def check(label, before, after):
        b, a = np.asarray(before.get_value()), np.asarray(after.get_value())
        seen[label] += 1
        if label == "frozen":
            np.testing.assert_array_equal(a, b)
        elif label == lora.LORA:
            batch, out_at = lora.matrix_split(before)
            delta = (a - b).reshape(*a.shape[:batch], int(np.prod(a.shape[batch:out_at])), -1)
            for matrix in delta.reshape(-1, *delta.shape[-2:]):
                s = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
                assert s[0] > 0 and s[RANK] < 1e-5 * s[0], s  # moved, and rank <= r
        else:
            assert not np.array_equal(a, b)

    jax.tree.map(check, labels, params0, params, is_leaf=is_var)
    assert all(seen.values()), seen
    # Step 0 is the source model exactly (B starts at zero).
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params0), tx.init(params0), params0)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates))


def test_lora_settings_that_cannot_work_are_one_line_errors():
    cfg = models.tiny("llp")
    params = nnx.split(nnx.eval_shape(lambda: models.build(cfg, seed=0)))[1]
    cases = {
        ("embed|norm", 8): "leaves no attention projection",
        ("longlora", 65): "above the attention projections' smaller side",
    }
    for (trainable, rank), message in cases.items():
        train = TrainConfig(trainable=trainable, lora_rank=rank)
        with pytest.raises(models.ConfigError, match=message) as e:
            finetune.optimizer(make_optimizer(train), params, train)
        assert "\n" not in str(e.value)
    for bad in ({"lora_rank": -1}, {"lora_alpha": 0.0}, {"lora_alpha": float("nan")}):
        with pytest.raises(models.ConfigError, match=f"train.{next(iter(bad))}"):
            TrainConfig(**bad).validate()


def _train_cli(workdir, corpus, steps, *flags):
    from tests.helpers.cli import run_cli

    result = run_cli("train", "--config=llp_jax/configs/tiny.py:llp", f"--workdir={workdir}",
                     f"--config.data.corpus={corpus}", f"--config.train.num_steps={steps}",
                     "--config.train.batch_size=8", "--config.train.log_every=1",
                     "--config.train.checkpoint_every=2", "--config.train.eval_every=100",
                     "--config.train.eval_batches=1", "--config.sample.num_tokens=0",
                     "--config.train.warmup_steps=1", *flags)  # fmt: skip
    assert result.rc == 0, str(result)
    return result


@pytest.mark.slow
def test_a_lora_fine_tune_through_the_cli_resumes_exactly_and_moves_attention_by_rank_r(
    corpus_file, tmp_path
):
    """The real launcher: a LoRA fine-tune says what trains, its checkpoints hold the merged
    weights (readable by load_model, each projection moved from the source's by rank <= r), and
    a run stopped at step 2 and resumed (the factors restored from the optimizer state) gives
    the uninterrupted run's losses exactly."""
    from llp_jax.evaluation import load_model
    from llp_jax.storage import read_jsonl

    _train_cli(tmp_path / "src", corpus_file, 4)
    lora_flags = (f"--config.train.init_from={tmp_path / 'src'}", "--config.train.trainable=longlora",
                  "--config.train.lora_rank=3", "--config.train.learning_rate=1e-2")  # fmt: skip
    whole = _train_cli(tmp_path / "whole", corpus_file, 4, *lora_flags)
    assert "(train.trainable='longlora', attention as rank-3 LoRA updates; the rest frozen)" in (
        whole.stdout
    ), whole.stdout
    _train_cli(tmp_path / "cut", corpus_file, 2, *lora_flags)
    resumed = _train_cli(tmp_path / "cut", corpus_file, 4, *lora_flags)
    assert "resumed from step 2" in resumed.stdout, resumed.stdout
    losses = lambda w: {r["step"]: r["loss"] for r in read_jsonl(f"{w}/metrics.jsonl")  # noqa: E731
                        if "loss" in r}  # fmt: skip
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")

    source = nnx.state(load_model(str(tmp_path / "src")).model, nnx.Param)
    tuned = nnx.state(load_model(str(tmp_path / "whole")).model, nnx.Param)
    checked = 0
    for (path, before), after in zip(
        jax.tree_util.tree_leaves_with_path(source, is_leaf=lambda x: isinstance(x, nnx.Variable)),
        jax.tree.leaves(tuned, is_leaf=lambda x: isinstance(x, nnx.Variable)),
        strict=True,
    ):
        split = lora.matrix_split(before)
        delta = np.asarray(after.get_value()) - np.asarray(before.get_value())
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        if "/ff/" in name or name.startswith("head"):
            assert not delta.any(), name
        if split is None:
            continue
        batch, out_at = split
        rows = int(np.prod(delta.shape[batch:out_at]))
        for matrix in delta.reshape(-1, rows, int(np.prod(delta.shape[out_at:]))):
            s = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
            assert s[0] > 0 and s[3] < 1e-5 * s[0], (name, s[:5])
            checked += 1
    assert checked == 4 * 2, checked  # wq, wk, wv, wo of the two layers
