"""Device mesh and the one logical-axis table.

Every sharding decision in `llp_jax` lives in `LOGICAL_AXIS_RULES`: parameters carry logical
axis names in their `nnx.Param(..., out_sharding=(...))` metadata, and this module turns names
into `PartitionSpec`s on a ('data', 'fsdp', 'tensor') mesh, plus a 'sequence' axis when sequence
parallelism is on. Activations are not annotated: the batch enters split over the data axes
('batch'), the parameters as the table says, and GSPMD propagates the rest (the sequence-parallel
LLP places its activations itself, inside `shard_map`).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, Iterator, Sequence

import jax
import numpy as np
from flax import nnx
from flax.core import spmd as flax_spmd
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from llp_jax import backend
from llp_jax.errors import ConfigError
from llp_jax.training.config import MESH_AXES, MeshConfig, TrainConfig

# Axes a mesh has only when their size is > 1, so that a config without them (or with size 1)
# builds exactly the ('data', 'fsdp', 'tensor') mesh it always did.
OPTIONAL_AXES = ("sequence",)

MeshAxes = str | tuple[str, ...] | None

LOGICAL_AXIS_RULES: tuple[tuple[str, MeshAxes], ...] = (
    # Activations. The batch is split over every data-parallel axis: 'fsdp' is data parallelism
    # whose parameters are sharded too, so both axes see different examples.
    ("batch", ("data", "fsdp")),
    # Sequence (context) parallelism: LLP's only cross-segment dependency is the previous k
    # segments, so each device holds a contiguous run of segments and receives the left
    # neighbour's last keys/values per layer (training/sequence_parallel.py).
    ("length", "sequence"),
    # Parameters. 'embed' is the FSDP axis: every matrix has a d_model dimension, so sharding it
    # over 'fsdp' spreads all parameters and optimizer moments (ZeRO-3); XLA all-gathers them
    # per layer. 'heads', 'mlp' and 'vocab' are the tensor-parallel (Megatron) dimensions.
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    # Small or scan-sensitive axes stay replicated: per-head dims ('kv') and LayerNorm vectors
    # ('norm') are tiny; 'seq' (V3's compression matrix) is short; 'layers' is the scan axis
    # of stacked blocks, which must be whole on every device for `jax.lax.scan` to slice it.
    ("kv", None),
    ("norm", None),
    ("seq", None),
    ("layers", None),
)
"""Logical axis name -> mesh axis (or axes, or None = replicated). The only sharding table."""

_RULES = dict(LOGICAL_AXIS_RULES)


def mesh_shape(mesh_config: Any, num_devices: int | None = None) -> tuple[int, ...]:
    """Resolves the sizes of MESH_AXES, filling a single -1 with the remaining devices.

    Args:
      mesh_config: a `MeshConfig`, or a ConfigDict / mapping of its fields; at most one -1.
      num_devices: defaults to `jax.device_count()`.

    Returns:
      One size per MESH_AXES entry, whose product equals `num_devices`.

    Raises:
      ConfigError: more than one -1, a non-positive size, or a product that does not match.
    """
    n = jax.device_count() if num_devices is None else num_devices
    mesh_config = MeshConfig.from_any(mesh_config)
    sizes = [getattr(mesh_config, axis) for axis in MESH_AXES]
    desc = ", ".join(f"{a}={s}" for a, s in zip(MESH_AXES, sizes))
    fill = [i for i, s in enumerate(sizes) if s == -1]
    known = math.prod(s for s in sizes if s != -1)
    if fill:
        if n % known:
            raise ConfigError(f"mesh config ({desc}): {n} devices are not divisible by {known}; "
                              f"give the other axes sizes whose product divides {n}")  # fmt: skip
        sizes[fill[0]] = n // known
    if math.prod(sizes) != n:
        product = math.prod(sizes)
        raise ConfigError(
            f"mesh config ({desc}): {'*'.join(MESH_AXES)}={product} != {n} devices; make the "
            "product the device count, or let one axis take the rest (--config.mesh.data=-1)"
        )
    return tuple(sizes)  # type: ignore[return-value]


def make_mesh(mesh_config: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds the ('data', 'fsdp', 'tensor') mesh over `devices` (default: all devices), with a
    'sequence' axis between 'fsdp' and 'tensor' when `mesh_config.sequence` > 1.

    Axes are `AxisType.Auto` (GSPMD propagation from `out_shardings` and
    `with_sharding_constraint`), not jax's new default `Explicit`, so model code needs no
    sharding-in-types annotations.
    """
    devices = device_list(devices)
    sizes = mesh_shape(mesh_config, len(devices))
    kept = [(a, n) for a, n in zip(MESH_AXES, sizes) if a not in OPTIONAL_AXES or n > 1]
    names, shape = tuple(a for a, _ in kept), tuple(n for _, n in kept)
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(names), devices=devices)


def check_batch(train: TrainConfig, mesh) -> int:
    """Returns the per-process batch size; one-line errors for batches the mesh cannot split."""
    data_ways = mesh.shape["data"] * mesh.shape["fsdp"]
    B, k = train.batch_size, train.grad_accum_steps
    if B % (data_ways * k):
        raise ConfigError(
            f"train.batch_size={B} must be a positive multiple of mesh data*fsdp={data_ways} "
            f"times train.grad_accum_steps={k}"
        )
    return B // jax.process_count()


def device_list(devices) -> list[jax.Device]:
    """`devices` as a run takes it (`train_and_evaluate(..., devices=)`): None (every device),
    an int n (the first n), or the devices themselves; anything else is one line (an int was
    "'int' object is not iterable" from the mesh)."""
    if devices is None:
        backend.check()
        return list(jax.devices())
    available = jax.devices()
    if isinstance(devices, numbers.Integral) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ConfigError(f"devices={devices}: this host has {len(available)} "
                              f"{available[0].platform} device(s); give 1..{len(available)}")  # fmt: skip
        return available[: int(devices)]
    try:  # a list, a tuple, a numpy array of devices (mesh_utils' device grids, flattened)
        listed = None if isinstance(devices, str) else list(np.ravel(np.asarray(devices, object)))
    except TypeError:
        listed = None
    if not listed or not all(isinstance(d, jax.Device) for d in listed):
        raise ConfigError(f"devices={devices!r} must be a list of jax devices (jax.devices()[:2]),"
                          " an int (the first n) or None (all of them)")  # fmt: skip
    return listed


def _present_axes(mesh: Mesh | None) -> set[str]:
    """Mesh axes a spec may name: `mesh`'s, else the current mesh's, else the non-optional ones."""
    if mesh is None:
        current = jax.sharding.get_abstract_mesh()
        mesh = None if current.empty else current
    if mesh is None:
        return set(MESH_AXES) - set(OPTIONAL_AXES)
    return set(mesh.axis_names)


def logical_to_mesh_spec(
    names: Sequence[str | None] | None, mesh: Mesh | None = None
) -> PartitionSpec:
    """Maps logical axis names (one per array dimension) to a `PartitionSpec` via the table.

    Unknown names raise `KeyError` so a typo cannot silently replicate a large matrix.
    A mesh axis already used by an earlier dimension is dropped from later ones (a mesh axis
    may shard only one dimension), and so is an optional axis ('sequence') that the mesh lacks
    (`mesh`, default: the current mesh, or none).
    """
    if not names:
        return PartitionSpec()
    used: set[str] = set(MESH_AXES) - _present_axes(mesh)  # absent axes count as taken
    out = []
    for name in names:
        if name is None:
            out.append(None)
            continue
        if name not in _RULES:
            raise KeyError(f"logical axis {name!r} is not in LOGICAL_AXIS_RULES")
        axes = _as_tuple(_RULES[name])
        axes = tuple(a for a in axes if a not in used)
        used.update(axes)
        out.append(_from_tuple(axes))
    return PartitionSpec(*out)


def _as_tuple(axes: MeshAxes) -> tuple[str, ...]:
    if axes is None:
        return ()
    return (axes,) if isinstance(axes, str) else tuple(axes)


def _from_tuple(axes: tuple[str, ...]) -> MeshAxes:
    return None if not axes else axes[0] if len(axes) == 1 else axes


def fit_spec_to_shape(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
    """Replicates every dimension whose size is not divisible by its mesh axes' total size.

    `jit(out_shardings=...)` and `device_put` raise on uneven shards; replicating such a dimension
    (e.g. a vocabulary of 257 on tensor=2) is always correct, merely less memory-efficient.
    """
    out = []
    for i, size in enumerate(shape):
        axes = tuple(a for a in (_as_tuple(spec[i]) if i < len(spec) else ()) if a in mesh.shape)
        # Drop mesh axes from the right until the remaining product divides the dimension.
        while axes and size % math.prod(mesh.shape[a] for a in axes):
            axes = axes[:-1]
        out.append(_from_tuple(axes))
    return PartitionSpec(*out)


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def variable_logical_axes(var: nnx.Variable) -> tuple[str | None, ...] | None:
    """The logical names of a Variable (its `out_sharding` metadata), or None if unannotated."""
    names = var.get_metadata().get("out_sharding")
    return tuple(names) if names else None


def state_shardings(abstract_state: Any, mesh: Mesh) -> Any:
    """A `NamedSharding` for every Variable (and bare array leaf) of an (abstract) state.

    The result replaces each `nnx.Variable` by one `NamedSharding`: it is a pytree *prefix* of the
    state, so it works as `jax.jit` `in/out_shardings` and in `jax.device_put` whatever the
    Variables' other metadata. Unannotated leaves (e.g. an optimizer step count) are replicated.

    Args:
      abstract_state: an `nnx.State` (or any pytree) of Variables holding arrays or
        `jax.ShapeDtypeStruct`s, e.g. from `nnx.split(nnx.eval_shape(factory))`.
      mesh: the mesh to place onto.
    """

    def leaf_sharding(x: Any) -> NamedSharding:
        if _is_variable(x):
            names, shape = variable_logical_axes(x), x.get_value().shape
        else:
            names, shape = None, getattr(x, "shape", ())
        annotated = names and len(names) == len(shape)
        spec = logical_to_mesh_spec(names) if annotated else PartitionSpec()
        return NamedSharding(mesh, fit_spec_to_shape(spec, shape, mesh))

    return jax.tree.map(leaf_sharding, abstract_state, is_leaf=_is_variable)


def sharded_abstract_state(abstract_state: Any, mesh: Mesh) -> Any:
    """The abstract state with each array replaced by a `ShapeDtypeStruct` carrying its sharding.

    This is the restore target for Orbax (`checkpoint.Checkpointer.restore`): arrays are read
    straight into these shardings, whatever mesh they were saved from.
    """

    def attach(sharding: NamedSharding, leaf: Any) -> Any:
        def sds(a):
            return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)

        return leaf.replace(sds(leaf.get_value())) if _is_variable(leaf) else sds(leaf)

    return jax.tree.map(attach, state_shardings(abstract_state, mesh), abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a [B, ...] input batch: axis 0 over every data-parallel mesh axis."""
    return NamedSharding(mesh, logical_to_mesh_spec(("batch",)))


@contextlib.contextmanager
def sharding_context(mesh: Mesh, *, eager_sharding: bool = False) -> Iterator[Mesh]:
    """Sets `mesh` as the current mesh and installs the table as flax's logical-axis rules.

    Inside it, flax resolves logical names (`nnx.get_partition_spec`, eager sharding) with our
    table. Flax 0.12 enables *eager sharding* by default: a Variable created with `out_sharding`
    metadata is immediately constrained to it, which fails without a mesh and on non-divisible
    dimensions. We turn it off by default here: placement is done once, by the jitted init with
    `out_shardings` (`train_step.init_train_state`).
    """
    with jax.set_mesh(mesh), flax_spmd.logical_axis_rules(LOGICAL_AXIS_RULES):
        with nnx.use_eager_sharding(eager_sharding):
            yield mesh
