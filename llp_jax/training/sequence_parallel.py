"""Sequence (context) parallelism for LLP: the window split along its length over a mesh axis.

The logical-axis table maps 'length' to the mesh axis that splits sequences ('sequence', present
when `config.mesh.sequence` > 1). The model runs in `jax.shard_map`, manual over every mesh axis:
tokens are split as the table says for ('batch', 'length'), so each device embeds and runs its
own rows and contiguous run of segments, receiving the left neighbour's last k segments of
keys/values per layer (`models/llp_parallel.py`), and scores its own targets; the loss is the
`psum` of per-device sums. Parameters enter replicated, so the transpose of that replication sums
their gradients over the axes the tokens vary along: loss and gradients equal the single-device
computation.

Why manual over all axes rather than over 'sequence' alone (leaving 'data'/'fsdp'/'tensor' to
GSPMD): XLA's SPMD partitioner aborts on such partially manual computations on some meshes (e.g.
data=2, sequence=2, tensor=2), and a process abort cannot be caught. The price is that an
'fsdp'/'tensor'-sharded parameter is gathered whole on every device for the step, and 'tensor'
devices compute the same thing: combine sequence parallelism with 'data' parallelism.

Use `select_loss(mesh, next_token_loss)` in the train and eval steps: it returns the default
loss when the mesh does not split sequences.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, PartitionSpec

from llp_jax.models.config import ModelConfig
from llp_jax.models.llp_parallel import check_split, logits_local
from llp_jax.training import mesh as mesh_lib

# (graphdef, params, batch, rng) -> (mean loss, {'nll_sum', 'tokens'}), as train_step's.
LossFn = Callable[..., tuple[jax.Array, dict]]


def sequence_axis(mesh: Mesh) -> str | None:
    """The mesh axis the table assigns to 'length' if the mesh has it with size > 1, else None."""
    axis = mesh_lib.logical_to_mesh_spec(("length",), mesh)[0]
    if axis is None:
        return None
    if not isinstance(axis, str):
        raise TypeError(f"'length' must map to one mesh axis for sequence parallelism, not {axis}")
    return axis if mesh.shape[axis] > 1 else None


def check_config(cfg: ModelConfig, mesh: Mesh, seq_len: int | None = None) -> None:
    """One-line ConfigError before any compile if `mesh` splits sequences `cfg` cannot split."""
    axis = sequence_axis(mesh)
    if axis is not None:
        check_split(cfg, cfg.seq_len if seq_len is None else seq_len, mesh.shape[axis])


def _token_spec(mesh: Mesh, shape_BxT) -> PartitionSpec:
    """How [B, T] tokens are split: the table's ('batch', 'length'), B's axes fitted to B."""
    spec = mesh_lib.logical_to_mesh_spec(("batch", "length"), mesh)
    return mesh_lib.fit_spec_to_shape(spec, shape_BxT, mesh)


def _spec_axes(spec: PartitionSpec) -> tuple[str, ...]:
    return tuple(a for part in spec if part for a in ((part,) if isinstance(part, str) else part))


def _inputs(spec_BxT: PartitionSpec, fn, rng, *args):
    """(fn, in_specs, args) for `shard_map`: args[0] (params) replicated, the rest [B, T] split
    by `spec_BxT`, `rng` replicated if given (None is not a valid shard_map input).

    The wrapped `fn` gets a dropout key folded with its batch-shard index, so devices holding
    different rows draw different masks (the model folds in the sequence-shard index itself).
    """
    specs = (PartitionSpec(),) + (spec_BxT,) * (len(args) - 1)
    if rng is None:
        return (lambda *a: fn(*a, None)), specs, args
    batch_axes = _spec_axes(PartitionSpec(spec_BxT[0]))

    def wrapped(*a):
        *a, key = a
        if batch_axes:
            key = jax.random.fold_in(key, jax.lax.axis_index(batch_axes))
        return fn(*a, key)

    return wrapped, (*specs, PartitionSpec()), (*args, rng)


def sequence_parallel_loss(graphdef: nnx.GraphDef, params: nnx.State, batch, rng, *, mesh: Mesh):
    """`train_step.next_token_loss` with every sequence split over the mesh's 'length' axis.

    Args:
      graphdef, params: the split LLP model.
      batch: {'inputs', 'targets'} int32 [B, T]; T a multiple of mesh.sequence * segment_len.
      rng: dropout key or None.
      mesh: a mesh with a 'sequence' axis of size > 1.

    Returns:
      (mean cross-entropy over all B * T positions, {'nll_sum', 'tokens'}).
    """
    axis = sequence_axis(mesh)
    if axis is None:
        raise ValueError(f"mesh {dict(mesh.shape)} does not split sequences")
    shards = mesh.shape[axis]
    inputs_BxT, targets_BxT = batch["inputs"], batch["targets"]
    check_split(nnx.merge(graphdef, params).cfg, inputs_BxT.shape[1], shards)
    spec_BxT = _token_spec(mesh, inputs_BxT.shape)

    def local(params, inputs, targets, rng):
        model = nnx.merge(graphdef, params)
        logits_BxTxV = logits_local(model, inputs, rng, axis=axis, num_shards=shards)
        nll_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, targets)
        return jax.lax.psum(nll_BxT.sum(), _spec_axes(spec_BxT))

    fn, specs, args = _inputs(spec_BxT, local, rng, params, inputs_BxT, targets_BxT)
    nll_sum = jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec())(*args)
    tokens = jnp.float32(targets_BxT.size)
    return nll_sum / tokens, {"nll_sum": nll_sum, "tokens": tokens}


def forward(model: nnx.Module, tokens_BxT: jax.Array, mesh: Mesh, *, rng=None) -> jax.Array:
    """Logits [B, T, V] of an LLP model with the sequence split over the mesh's 'length' axis.

    The result stays split along T over that axis (no device gathers the whole sequence).
    """
    axis = sequence_axis(mesh)
    if axis is None:
        raise ValueError(f"mesh {dict(mesh.shape)} does not split sequences")
    shards = mesh.shape[axis]
    check_split(model.cfg, tokens_BxT.shape[1], shards)
    graphdef, params = nnx.split(model)
    spec_BxT = _token_spec(mesh, tokens_BxT.shape)

    def local(params, tokens, rng):
        model = nnx.merge(graphdef, params)
        return logits_local(model, tokens, rng, axis=axis, num_shards=shards)

    fn, specs, args = _inputs(spec_BxT, local, rng, params, tokens_BxT)
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=spec_BxT)(*args)


def select_loss(mesh: Mesh, default: LossFn) -> LossFn:
    """The train/eval loss for `mesh`: sequence-parallel if it splits sequences, else `default`."""
    if sequence_axis(mesh) is None:
        return default
    return functools.partial(sequence_parallel_loss, mesh=mesh)
