"""Checkpoint round trip (state + JSON + grain iterator), retention, resharding, damaged steps."""

import logging

import grain
import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from llp_jax.storage import checkpoints as ckpt_lib
from llp_jax.storage import steps as steps_lib
from llp_jax.training import mesh as mesh_lib
from llp_jax.training import optimizer as opt_lib
from llp_jax.training.config import TrainConfig
from tests.helpers.standin import StandInLM, sharded_params


def mesh_of(data, fsdp, tensor):
    config = ml_collections.ConfigDict({"data": data, "fsdp": fsdp, "tensor": tensor})
    return mesh_lib.make_mesh(config)


def factory():
    return StandInLM(16, rngs=nnx.Rngs(params=0))


def tx():
    tc = TrainConfig()
    return opt_lib.make_optimizer(tc, 100)


def train_state(mesh):
    """{'params', 'opt_state'} created sharded on `mesh`, and its abstract restore target."""
    _, params = sharded_params(factory, mesh)
    opt_state = jax.jit(tx().init)(params)
    state = {"params": params, "opt_state": opt_state}
    return state, abstract_target(mesh)


def abstract_target(mesh):
    with nnx.use_eager_sharding(False):
        abstract_params = nnx.state(nnx.eval_shape(factory))
    abstract = {"params": abstract_params, "opt_state": jax.eval_shape(tx().init, abstract_params)}
    return mesh_lib.sharded_abstract_state(abstract, mesh)


def data_iterator():
    return iter(grain.MapDataset.range(1000).map(lambda i: np.int64(i) * 10).to_iter_dataset())


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def assert_params_equal(a, b):
    assert_trees_equal(nnx.to_pure_dict(a), nnx.to_pure_dict(b))


def bump(state, step):
    return jax.tree.map(lambda x: x + step if np.issubdtype(x.dtype, np.floating) else x, state)


@pytest.fixture(scope="module")
def mesh222():
    return mesh_of(2, 2, 2)


def test_round_trip_state_meta_and_data_iterator(tmp_path, mesh222):
    state, target = train_state(mesh222)
    it = data_iterator()
    consumed = [int(next(it)) for _ in range(7)]
    config = ml_collections.ConfigDict({"model": {"d": 8}, "lr": 3e-4, "betas": (0.9, 0.95)})
    with ckpt_lib.Checkpointer(tmp_path / "ckpt", async_save=True) as ckpt:
        assert ckpt.save(7, state, meta={"config": config}, data_iterator=it)
        after_save = [int(next(it)) for _ in range(3)]  # advancing during the async write is safe
        ckpt.wait_until_finished()
        assert ckpt.latest_step() == 7

    fresh = data_iterator()
    with ckpt_lib.Checkpointer(tmp_path / "ckpt") as ckpt:  # a new process would do this
        restored = ckpt.restore(target, data_iterator=fresh)
    assert restored.step == 7
    assert_params_equal(restored.state["params"], state["params"])
    assert_trees_equal(restored.state["opt_state"], state["opt_state"])
    w_in = restored.state["params"]["blocks"]["w_in"][...]
    assert w_in.sharding.spec == P(None, "fsdp", "tensor")
    assert restored.meta["step"] == 7
    assert restored.meta["config"] == {"model": {"d": 8}, "lr": 3e-4, "betas": [0.9, 0.95]}
    # The read-only side sees the same step, meta and params, without a CheckpointManager.
    assert steps_lib.committed_steps(tmp_path / "ckpt") == [7]
    assert steps_lib.read_meta(tmp_path / "ckpt", 7)["config"]["lr"] == 3e-4
    params = steps_lib.load_params(tmp_path / "ckpt", 7)
    assert_trees_equal(params, nnx.to_pure_dict(state["params"]))
    assert [int(next(fresh)) for _ in range(3)] == after_save
    assert consumed == [0, 10, 20, 30, 40, 50, 60]


def test_save_every_keep_last_k_plus_best(tmp_path):
    state = {"w": np.arange(4.0, dtype=np.float32)}
    val_loss = {2: 3.0, 4: 1.0, 6: 2.0, 8: 2.5, 10: 2.2, 12: 2.4}  # best: step 4
    with ckpt_lib.Checkpointer(tmp_path, save_every=2, keep=2, async_save=False) as ckpt:
        saved = []
        for step in range(1, 13):
            metrics = {"val_loss": val_loss[step]} if step in val_loss else None
            if ckpt.save(step, bump(state, step), metrics=metrics):
                saved.append(step)
        ckpt.save(13, bump(state, 13), force=True)  # e.g. the final step, off the interval
        ckpt.wait_until_finished()
        # Step 1 is saved because Orbax always saves the first step it sees.
        assert saved == [1, 2, 4, 6, 8, 10, 12]
        assert ckpt.all_steps() == [4, 12, 13]  # best on validation + the last two
        assert ckpt.best_step() == 4
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        restored = ckpt.restore(target, step=4)
        np.testing.assert_array_equal(restored.state["w"], state["w"] + 4)
        assert restored.data_iterator is None
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["12", "13", "4"]


def test_restore_onto_a_different_sharding(tmp_path, mesh222):
    state, _ = train_state(mesh222)
    with ckpt_lib.Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state)
        ckpt.wait_until_finished()
        other = mesh_of(1, 8, 1)  # all-FSDP instead of 2x2x2
        restored = ckpt.restore(abstract_target(other))
    w_in = restored.state["params"]["blocks"]["w_in"][...]
    assert w_in.sharding.mesh.shape == other.shape
    assert w_in.sharding.spec == P(None, "fsdp", "tensor")  # tensor has size 1 here
    assert w_in.addressable_shards[0].data.shape == (2, 1, 32)  # was (2, 4, 16) on 2x2x2
    assert_params_equal(restored.state["params"], state["params"])


def test_damaged_newest_step_falls_back_to_the_previous(tmp_path, caplog):
    state = {"w": np.arange(64.0, dtype=np.float32).reshape(8, 8)}
    it = data_iterator()
    with ckpt_lib.Checkpointer(tmp_path, async_save=False) as ckpt:
        for step in (1, 2, 3):
            next(it)
            ckpt.save(step, bump(state, step), data_iterator=it)
    # Truncate every array data file of step 3 to half its length.
    data_files = [
        p for p in (tmp_path / "3" / "state").rglob("*") if p.is_file() and p.parent.name == "d"
    ]
    assert data_files
    for path in data_files:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    fresh = data_iterator()
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    with caplog.at_level(logging.WARNING, logger=ckpt_lib.__name__):
        with ckpt_lib.Checkpointer(tmp_path) as ckpt:
            assert ckpt.latest_step() == 3
            restored = ckpt.restore(target, data_iterator=fresh)
    assert restored.step == 2
    np.testing.assert_array_equal(restored.state["w"], state["w"] + 2)
    assert int(next(fresh)) == 20  # the position saved at step 2: two elements consumed
    # The warning names the file cut short (it quoted tensorstore's spec, cut off before it).
    (warning,) = [r.getMessage() for r in caplog.records if "step 3" in r.getMessage()]
    assert str(tmp_path / "3" / "state") in warning and " is cut short (" in warning, warning
    # Asking for the damaged step explicitly raises instead of silently falling back.
    with ckpt_lib.Checkpointer(tmp_path) as ckpt, pytest.raises(Exception):
        ckpt.restore(target, step=3)


def test_restore_from_empty_directory_is_one_line_error(tmp_path):
    with ckpt_lib.Checkpointer(tmp_path / "nothing") as ckpt:
        assert ckpt.latest_step() is None
        with pytest.raises(FileNotFoundError) as err:
            ckpt.restore({"w": jax.ShapeDtypeStruct((2,), np.float32)})
    assert "no checkpoints" in str(err.value) and "\n" not in str(err.value)


def test_leftover_temporary_directory_is_not_a_step(tmp_path):
    state = {"w": np.ones(3, np.float32)}
    with ckpt_lib.Checkpointer(tmp_path, async_save=False) as ckpt:
        ckpt.save(1, state)
    # A save interrupted before its atomic rename leaves only a temporary directory behind.
    (tmp_path / "2.orbax-checkpoint-tmp-123").mkdir()
    with ckpt_lib.Checkpointer(tmp_path) as ckpt:
        assert ckpt.all_steps() == [1]
        assert ckpt.restore({"w": jax.ShapeDtypeStruct((3,), np.float32)}).step == 1


def test_json_safe():
    out = ckpt_lib.json_safe(
        {"a": np.float32(1.5), "b": (1, 2), "c": float("nan"), "d": object, "e": np.arange(2)}
    )
    assert out["a"] == 1.5 and out["b"] == [1, 2] and out["e"] == [0, 1]
    assert isinstance(out["c"], float) and out["c"] != out["c"]  # Orbax's JSON keeps NaN
    assert isinstance(out["d"], str)
