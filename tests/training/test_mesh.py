"""Mesh construction, the logical-axis table, shardings from parameter metadata, sharded init."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from llp_jax.training import mesh as mesh_lib
from llp_jax.training.config import MeshConfig
from tests.helpers.standin import StandInLM, make_standin, sharded_params


def cfg(data, fsdp, tensor):
    return ml_collections.ConfigDict({"data": data, "fsdp": fsdp, "tensor": tensor})


@pytest.fixture(scope="module")
def mesh222():
    return mesh_lib.make_mesh(cfg(2, 2, 2))


def test_make_mesh_shapes_and_fill():
    assert jax.device_count() == 8
    mesh = mesh_lib.make_mesh(cfg(2, 2, 2))
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert dict(mesh_lib.make_mesh(cfg(-1, 2, 1)).shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    assert dict(mesh_lib.make_mesh(cfg(1, -1, 2)).shape) == {"data": 1, "fsdp": 4, "tensor": 2}
    assert dict(mesh_lib.make_mesh(MeshConfig()).shape)["data"] == 8


@pytest.mark.parametrize("bad", [(3, 1, 1), (2, 2, 1), (-1, -1, 1), (-1, 3, 1), (0, 8, 1)])
def test_make_mesh_mismatch_is_one_line_error(bad):
    with pytest.raises(ValueError) as err:
        mesh_lib.make_mesh(cfg(*bad))
    message = str(err.value)
    assert "\n" not in message
    assert f"data={bad[0]}" in message and "fsdp=" in message and "tensor=" in message
    if bad in ((3, 1, 1), (2, 2, 1)):  # the fix, not only the mismatch
        assert "let one axis take the rest (--config.mesh.data=-1)" in message, message
    if bad == (-1, 3, 1):
        assert "sizes whose product divides 8" in message, message


def test_table_covers_every_logical_name():
    names = {
        "vocab",
        "embed",
        "heads",
        "kv",
        "mlp",
        "norm",
        "seq",
        "layers",
        "batch",
        "length",
    }
    assert names == {name for name, _ in mesh_lib.LOGICAL_AXIS_RULES}
    mesh_axes = set(mesh_lib.MESH_AXES)
    for _, axes in mesh_lib.LOGICAL_AXIS_RULES:
        assert axes is None or set((axes,) if isinstance(axes, str) else axes) <= mesh_axes


def test_logical_to_mesh_spec():
    spec = mesh_lib.logical_to_mesh_spec
    assert spec(("batch", "length")) == P(("data", "fsdp"), None)
    assert spec(("embed", "mlp")) == P("fsdp", "tensor")
    assert spec(("layers", "heads", "kv", "embed")) == P(None, "tensor", None, "fsdp")
    assert spec(("vocab", "embed")) == P("tensor", "fsdp")
    assert spec(("norm",)) == P(None)
    assert spec(None) == P()
    # A mesh axis shards at most one dimension: 'fsdp' is taken by 'batch' first.
    assert spec(("batch", "embed")) == P(("data", "fsdp"), None)
    with pytest.raises(KeyError):
        spec(("embd",))


def test_fit_spec_replicates_non_divisible_dims(mesh222):
    fit = mesh_lib.fit_spec_to_shape
    assert fit(P("fsdp", "tensor"), (3, 4), mesh222) == P(None, "tensor")
    # A 2-axis dimension drops axes from the right until it divides: 6 % 4 != 0, 6 % 2 == 0.
    assert fit(P(("data", "fsdp")), (6,), mesh222) == P("data")
    assert fit(P(("data", "fsdp")), (8,), mesh222) == P(("data", "fsdp"))


def test_state_shardings_follow_the_table(mesh222):
    # vocab 13 is odd: the 'vocab' dimensions (tensor=2) must fall back to replication.
    abstract = nnx.state(nnx.eval_shape(lambda: make_standin(vocab_size=13)))
    shardings = mesh_lib.state_shardings(abstract, mesh222)
    specs = {
        "/".join(map(str, path)): s.spec
        for path, s in jax.tree_util.tree_flatten_with_path(shardings)[0]
    }
    specs = {k.replace("['", "").replace("']", ""): v for k, v in specs.items()}
    assert specs == {
        "blocks/b_in": P(None, "tensor"),
        "blocks/scale": P(None, None),
        "blocks/w_in": P(None, "fsdp", "tensor"),
        "blocks/w_out": P(None, "tensor", "fsdp"),
        "embed": P(None, "fsdp"),  # ('vocab', 'embed'), vocab=13 not divisible by 2
        "head_b": P(None),
        "head_w": P("fsdp", None),
    }
    abstract16 = nnx.state(nnx.eval_shape(lambda: make_standin(vocab_size=16)))
    assert mesh_lib.state_shardings(abstract16, mesh222)["embed"].spec == P("tensor", "fsdp")


def test_init_sharded_places_arrays_and_matches_unsharded_init(mesh222):
    assert nnx.using_eager_sharding()  # flax's default; the sharded init must cope with it
    graphdef, state = sharded_params(lambda: StandInLM(13, rngs=nnx.Rngs(params=0)), mesh222)
    w_in = state["blocks"]["w_in"][...]
    assert w_in.shape == (2, 8, 32)
    assert w_in.sharding.spec == P(None, "fsdp", "tensor")
    assert w_in.addressable_shards[0].data.shape == (2, 4, 16)
    assert state["embed"][...].sharding.spec == P(None, "fsdp")
    assert state["blocks"]["scale"][...].sharding.is_fully_replicated
    reference = nnx.state(make_standin(vocab_size=13, seed=0))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
        nnx.to_pure_dict(state),
        nnx.to_pure_dict(reference),
    )
    model = nnx.merge(graphdef, state)
    tokens = jax.device_put(jnp.zeros((8, 4), jnp.int32), mesh_lib.batch_sharding(mesh222))
    assert jax.jit(lambda m, t: m(t))(model, tokens).shape == (8, 4, 13)


def test_sharded_abstract_state_and_batch_sharding(mesh222):
    abstract = nnx.state(nnx.eval_shape(lambda: make_standin()))
    target = mesh_lib.sharded_abstract_state(abstract, mesh222)
    w_in = target["blocks"]["w_in"].get_value()
    assert isinstance(w_in, jax.ShapeDtypeStruct)
    assert w_in.sharding.spec == P(None, "fsdp", "tensor")
    assert mesh_lib.batch_sharding(mesh222).spec == P(("data", "fsdp"))


def test_init_sharded_on_a_zoo_model(mesh222):
    """The real models follow the same metadata conventions as the stand-in."""
    from llp_jax import models as registry
    from llp_jax.models import config

    cfg = config.ModelConfig(
        name="transformer", vocab_size=250, num_layers=3, d_model=32, num_heads=4, seq_len=16
    )
    _, state = sharded_params(lambda: registry.build(cfg), mesh222)
    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    variables = dict(jax.tree_util.tree_flatten_with_path(state, is_leaf=is_var)[0])
    shardings = mesh_lib.state_shardings(state, mesh222)
    expected = dict(jax.tree_util.tree_flatten_with_path(shardings)[0])
    assert variables.keys() == expected.keys()
    for path, var in variables.items():
        spec = mesh_lib.logical_to_mesh_spec(var.get_metadata()["out_sharding"])
        assert var.get_value().sharding.spec == expected[path].spec, path
        if var.get_metadata()["out_sharding"][0] == "layers":  # the scan axis is never split
            assert var.get_value().sharding.spec[0] is None and spec[0] is None
        if var.get_metadata()["out_sharding"][-2:] == ("embed", "mlp"):
            assert var.get_value().sharding.spec[-2:] == ("fsdp", "tensor"), path


def test_devices_are_taken_in_every_form_a_caller_has_them():
    """A list, a tuple, a numpy grid (mesh_utils' device meshes) or a count; anything else is one
    line, not "'int' object is not iterable" from inside the mesh."""
    devices = jax.devices()
    for given in (devices[:4], tuple(devices[:4]), np.array(devices[:4]).reshape(2, 2), 4):
        assert mesh_lib.device_list(given) == devices[:4]
    for bad in ("cpu", [1, 2], [], 99, True):
        with pytest.raises(ValueError) as err:
            mesh_lib.device_list(bad)
        assert "\n" not in str(err.value) and "devices=" in str(err.value)
