"""LLP with the sequence split over devices (context parallelism) on 8 fake CPU devices: logits,
loss and gradients equal the single-device model, the only activation traffic is a neighbour
exchange (collective-permute, no all-gather of the sequence), and invalid splits are one-line
errors."""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.training import mesh as mesh_lib
from llp_jax.training import sequence_parallel as sp
from llp_jax.training.config import MeshConfig
from llp_jax.training.train_step import next_token_loss
from tests.helpers.models import make_config, random_tokens

V = 256


def make_mesh(data=1, fsdp=1, sequence=8, tensor=1):
    return mesh_lib.make_mesh(
        ml_collections.ConfigDict(
            {"data": data, "fsdp": fsdp, "sequence": sequence, "tensor": tensor}
        )
    )


def llp(faithful=False, **overrides):
    return make_config("llp", faithful, dropout=0.0, **overrides)


def batch_of(seed, B, n):
    tokens = random_tokens(seed, (B, n + 1), V)
    return {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}


def sharded_params(cfg, mesh):
    """The model's parameters placed as the table says (fsdp/tensor shards where the mesh has them)."""
    graphdef, params = nnx.split(models.build(cfg))
    with mesh_lib.sharding_context(mesh):
        shardings = mesh_lib.state_shardings(params, mesh)
        return graphdef, params, jax.device_put(params, shardings)


def loss_and_grads(loss_fn):
    return jax.jit(jax.value_and_grad(lambda p, b: loss_fn(p, b)[0]))


# (n, s, L, k, faithful, mesh axes): every device holds >= k segments.
CASES = [
    (128, 16, 2, 1, False, {"sequence": 8}),
    (128, 16, 3, 1, True, {"sequence": 8}),
    (128, 8, 2, 2, False, {"sequence": 8}),
    (96, 8, 1, 3, True, {"data": 2, "sequence": 4}),
    (128, 16, 2, 1, True, {"fsdp": 2, "sequence": 2, "tensor": 2}),
    (64, 32, 2, 1, False, {"data": 4, "sequence": 2}),
]
IDS = [f"n{n}-s{s}-L{L}-k{k}-{'code' if f else 'clean'}-{'x'.join(map(str, m.values()))}"
       for n, s, L, k, f, m in CASES]  # fmt: skip


@pytest.mark.parametrize("n,s,L,k,faithful,axes", CASES, ids=IDS)
def test_logits_equal_single_device(n, s, L, k, faithful, axes):
    cfg = llp(faithful, seq_len=n, segment_len=s, num_layers=L, prev_segments=k)
    mesh = make_mesh(**axes)
    graphdef, params, placed = sharded_params(cfg, mesh)
    tokens = batch_of(0, 2, n)["inputs"]
    expected = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))(params, tokens)
    got = jax.jit(lambda p, t: sp.forward(nnx.merge(graphdef, p), t, mesh))(placed, tokens)
    assert got.shape == (2, n, V)
    assert got.sharding.spec[1] == "sequence"  # the logits stay split along the sequence
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=2e-5, rtol=0)


@pytest.mark.parametrize("n,s,L,k,faithful,axes", CASES, ids=IDS)
def test_loss_and_grads_equal_single_device(n, s, L, k, faithful, axes):
    cfg = llp(faithful, seq_len=n, segment_len=s, num_layers=L, prev_segments=k)
    mesh = make_mesh(**axes)
    graphdef, params, placed = sharded_params(cfg, mesh)
    batch = batch_of(1, 2 * max(axes.get("data", 1), axes.get("fsdp", 1)), n)
    (loss, grads), (loss_ref, grads_ref) = both_losses(graphdef, params, placed, batch, mesh)
    np.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-6)
    for path, g, ref in paired(grads, grads_ref):
        np.testing.assert_allclose(np.asarray(g), ref, atol=1e-5, rtol=1e-4, err_msg=path)


def both_losses(graphdef, params, placed, batch, mesh):
    """(loss, grads) of the sequence-parallel run, then of the single-device one."""
    single = loss_and_grads(lambda p, b: next_token_loss(graphdef, p, b, None))(params, batch)
    split = loss_and_grads(lambda p, b: sp.sequence_parallel_loss(graphdef, p, b, None, mesh=mesh))(
        placed, batch
    )
    return split, single


def paired(grads, grads_ref):
    """(path, gradient, reference gradient as numpy) for every parameter."""
    flat_ref = dict(jax.tree_util.tree_flatten_with_path(grads_ref)[0])
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        yield str(path), g, np.asarray(flat_ref[path])


def test_aux_matches_next_token_loss():
    cfg = llp(seq_len=64, segment_len=8)
    mesh = make_mesh(sequence=8)
    graphdef, params, _ = sharded_params(cfg, mesh)
    batch = batch_of(2, 2, 64)
    _, aux_ref = jax.jit(lambda p, b: next_token_loss(graphdef, p, b, None))(params, batch)
    _, aux = jax.jit(lambda p, b: sp.sequence_parallel_loss(graphdef, p, b, None, mesh=mesh))(
        params, batch
    )
    assert float(aux["tokens"]) == float(aux_ref["tokens"]) == 2 * 64
    np.testing.assert_allclose(float(aux["nll_sum"]), float(aux_ref["nll_sum"]), rtol=1e-6)


# ----------------------------------------------------------------------------- collectives
def _collectives(hlo: str) -> list[tuple[str, str]]:
    """(op, result shape) of every collective in an HLO module's text."""
    ops = "collective-permute|all-gather|all-reduce|all-to-all|reduce-scatter"
    pattern = rf"= (\S+?\[[\d,]*\])\S* ({ops})(?:-start)?\("
    return [(op, shape) for shape, op in re.findall(pattern, hlo)]


@pytest.mark.parametrize("axes", [{"sequence": 8}, {"fsdp": 2, "sequence": 4}], ids=["8", "2x4"])
def test_train_step_exchanges_only_neighbour_keys_values(axes):
    n, s, B = 192, 8, 2  # n appears in no parameter shape, so a [.., n, ..] gather is activations
    cfg = llp(seq_len=n, segment_len=s, num_layers=3)
    mesh = make_mesh(**axes)
    graphdef, _, placed = sharded_params(cfg, mesh)
    batch = batch_of(3, B * axes.get("fsdp", 1), n)
    step = loss_and_grads(lambda p, b: sp.sequence_parallel_loss(graphdef, p, b, None, mesh=mesh))
    hlo = step.lower(placed, batch).compile().as_text()
    found = _collectives(hlo)
    permutes = [shape for op, shape in found if op == "collective-permute"]
    # One k*s-position slice of keys/values per layer (forward), and its transpose (backward).
    assert permutes and all(f",{s}," in shape for shape in permutes), permutes
    gathers = [shape for op, shape in found if op == "all-gather"]
    assert not any(re.search(rf"[\[,]{n}[,\]]", shape) for shape in gathers), gathers
    if "fsdp" not in axes:
        assert not gathers  # replicated parameters: nothing to gather at all


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "overrides,seq_len,match",
    [
        ({"seq_len": 120, "segment_len": 8}, 120, "whole segments"),  # 15 segments over 8 devices
        ({"seq_len": 128, "segment_len": 16, "prev_segments": 2}, 128, "prev_segments=2"),
        ({"seq_len": 64, "segment_len": 8}, 72, "whole segments"),
    ],
)
def test_invalid_split_is_a_one_line_error(overrides, seq_len, match):
    cfg = llp(**overrides)
    mesh = make_mesh(sequence=8)
    with pytest.raises(models.ConfigError, match=match) as err:
        sp.check_config(cfg, mesh, seq_len)
    assert "\n" not in str(err.value)
    graphdef, params, _ = sharded_params(cfg, mesh)
    with pytest.raises(models.ConfigError, match=match):
        sp.sequence_parallel_loss(graphdef, params, batch_of(0, 2, seq_len), None, mesh=mesh)


def test_other_models_are_rejected():
    cfg = make_config("transformer", seq_len=64)
    with pytest.raises(models.ConfigError, match="model.name='llp'") as err:
        sp.check_config(cfg, make_mesh(sequence=8))
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- mesh and wiring
def test_mesh_axis_and_table():
    assert dict(mesh_lib.LOGICAL_AXIS_RULES)["length"] == "sequence"
    mesh = make_mesh(data=2, sequence=4)
    assert mesh.axis_names == ("data", "fsdp", "sequence", "tensor")
    assert mesh_lib.logical_to_mesh_spec(("batch", "length"), mesh) == jax.sharding.PartitionSpec(
        ("data", "fsdp"), "sequence"
    )
    # Without sequence parallelism (size 1 or no field) the mesh is the usual three axes.
    plain = mesh_lib.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1}))
    assert plain.axis_names == ("data", "fsdp", "tensor")
    assert mesh_lib.make_mesh(MeshConfig()).axis_names == plain.axis_names
    assert mesh_lib.logical_to_mesh_spec(("length",), plain) == jax.sharding.PartitionSpec(None)


def test_select_loss():
    assert sp.select_loss(mesh_lib.make_mesh(MeshConfig()), next_token_loss) is (next_token_loss)
    assert sp.select_loss(make_mesh(sequence=8), next_token_loss) is not next_token_loss


def test_dropout_runs_and_differs_per_key():
    cfg = llp(seq_len=64, segment_len=8).replace(dropout=0.1)
    mesh = make_mesh(data=2, sequence=4)
    graphdef, params, _ = sharded_params(cfg, mesh)
    batch = batch_of(4, 2, 64)
    fn = jax.jit(lambda p, b, r: sp.sequence_parallel_loss(graphdef, p, b, r, mesh=mesh)[0])
    a, b, clean = (
        float(fn(params, batch, r)) for r in (jax.random.key(0), jax.random.key(1), None)
    )
    assert np.isfinite([a, b, clean]).all() and a != b and a != clean


@pytest.mark.parametrize("faithful", [False, True], ids=["clean", "code"])
def test_bfloat16_loss_and_grads_equal_single_device(faithful, cpu_bf16_mode):
    """bfloat16 inside the sequence-parallel shard_map, in each CPU matmul mode (the custom
    backwards of native bfloat16 and of float32 widening must type-check there and sum the
    replicated weights' gradients): loss and gradients match the single-device bfloat16 run."""
    cfg = llp(faithful, seq_len=128, segment_len=16, num_layers=2, compute_dtype="bfloat16")
    mesh = make_mesh(sequence=8)
    graphdef, params, placed = sharded_params(cfg, mesh)
    batch = batch_of(3, 2, 128)
    (loss, grads), (loss_ref, grads_ref) = both_losses(graphdef, params, placed, batch, mesh)
    np.testing.assert_allclose(float(loss), float(loss_ref), rtol=2e-3)
    for path, g, ref in paired(grads, grads_ref):
        np.testing.assert_allclose(np.asarray(g), ref, atol=3e-2 * (np.abs(ref).max() + 1e-6),
                                   err_msg=path)  # fmt: skip


@pytest.mark.parametrize("n,s,L,k,faithful,axes", [CASES[0], CASES[3], CASES[4]],
                         ids=[IDS[0], IDS[3], IDS[4]])  # fmt: skip
def test_document_masks_equal_single_device(n, s, L, k, faithful, axes):
    """Packed documents (model.document_mask): each device's document ids count the
    end-of-document tokens of the devices to its left, and the keys received from the left
    neighbour carry theirs, so logits, loss and gradients equal the single-device model's, with
    documents that cross device boundaries (end-of-document at ~1 position in 6)."""
    eod = 3
    cfg = llp(faithful, seq_len=n, segment_len=s, num_layers=L, prev_segments=k,
              document_mask=True, eod_id=eod)  # fmt: skip
    mesh = make_mesh(**axes)
    graphdef, params, placed = sharded_params(cfg, mesh)
    batch = batch_of(2, 2 * max(axes.get("data", 1), axes.get("fsdp", 1)), n)
    where = np.random.default_rng(0).random(batch["inputs"].shape) < 1 / 6
    batch["inputs"] = jnp.where(where, eod, batch["inputs"])
    ids = np.asarray(nnx.merge(graphdef, params).document_ids(batch["inputs"]))
    assert (ids[:, -1] > ids[:, n // 2]).all()  # documents cross the halves
    expected = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))(params, batch["inputs"])
    got = jax.jit(lambda p, t: sp.forward(nnx.merge(graphdef, p), t, mesh))(placed, batch["inputs"])
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=2e-5, rtol=0)
    one_document, _ = nnx.split(models.build(dataclasses.replace(cfg, document_mask=False)))
    across = jax.jit(lambda p, t: nnx.merge(one_document, p)(t))(params, batch["inputs"])
    assert np.abs(np.asarray(across) - np.asarray(expected)).max() > 1e-3  # the mask matters
    (loss, grads), (loss_ref, grads_ref) = both_losses(graphdef, params, placed, batch, mesh)
    np.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-6)
    for path, g, ref in paired(grads, grads_ref):
        np.testing.assert_allclose(np.asarray(g), ref, atol=1e-5, rtol=1e-4, err_msg=path)
