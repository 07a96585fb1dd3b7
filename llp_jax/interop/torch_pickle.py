"""The objects in a `torch.save` pickle, rebuilt without running a line of the file's code.

A pickle names the callables that rebuild its objects. `Unpickler` lets through only the few
that rebuild tensors and plain containers (as `torch.load(weights_only=True)` does); every other
class or function it names, a `torch.nn.Module` subclass or `os.system` alike, becomes a
`Foreign` record of its name, arguments and pickled state, and nothing of it is called. That
is what makes a whole pickled model readable, `torch.save(model, f)` rather than
`torch.save(model.state_dict(), f)`: a module's pickled state holds its `_parameters`,
`_buffers` and `_modules`, and `plain` turns such a record into the `state_dict()` PyTorch
would return (same keys, same order). Any other foreign object stays a `Foreign` record, which
its reader may refuse by name.

Tensors arrive as `_rebuild_tensor_v2(storage, offset, size, stride, ...)` over storages the
file keeps elsewhere; a storage not read yet (the legacy format writes them after the pickle)
is a `Pending` one, and `plain` resolves the tensors over it once the bytes are in.
"""

from __future__ import annotations

import collections
import pickle
from typing import Any, Callable

import numpy as np


class Foreign:
    """An object of a class (or the result of a function) outside the allow-list, recorded:
    `qualname` says which, `args` what it was called with, `state` what the pickle set on it."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):  # NEWOBJ: cls.__new__(cls, *args)
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args, **kwargs):  # REDUCE: cls(*args); nothing to run
        pass

    def __setstate__(self, state):  # BUILD
        self.state = state

    def is_module(self) -> bool:
        """A pickled `torch.nn.Module`: its state has parameters, buffers and children."""
        return isinstance(self.state, dict) and {"_parameters", "_modules"} <= set(self.state)


def foreign_name(obj: Any) -> str | None:
    """What an object outside the allow-list was called in the file (a record, or the bare
    class or function the pickle named); None for a plain object."""
    if isinstance(obj, Foreign) or (isinstance(obj, type) and issubclass(obj, Foreign)):
        return obj.qualname
    return None


class Pending:
    """A storage whose bytes come later in the file: its key and element type."""

    def __init__(self, key: str, dtype: np.dtype):
        self.key, self.dtype = key, dtype


class _PendingTensor:
    def __init__(self, storage: Pending, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _tensor(storage: np.ndarray, offset, size, stride) -> np.ndarray:
    size, stride, offset = tuple(size), tuple(stride), int(offset)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if (
        len(size) != len(stride)
        or min((*size, *stride, offset), default=0) < 0
        or (last >= len(storage))
    ):  # a damaged file: as_strided would read outside the storage
        raise ValueError(f"a tensor of shape {size} does not fit its storage of {len(storage)}")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * storage.itemsize for s in stride)
    )
    return np.array(view)  # a contiguous copy, independent of the shared storage


def _rebuild_tensor(storage, offset, size, stride, *rest):
    if isinstance(storage, Pending):
        return _PendingTensor(storage, offset, size, stride)
    return _tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *rest):  # (data, requires_grad, hooks[, state])
    return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,  # a module's _non_persistent_buffers_set
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
}


class Unpickler(pickle.Unpickler):
    """Unpickles with the allow-list above; `storages` maps (storage dtype, key, numel) to the
    storage's elements or a `Pending` one; `storage_types` maps torch's storage class names to
    element types."""

    def __init__(self, file, storage_types: dict, storages: Callable[[np.dtype, str, int], Any]):
        super().__init__(file)
        self._types, self._storages = storage_types, storages
        self._foreign: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if module == "torch" and name in self._types:
            return self._types[name]
        qualname = f"{module}.{name}"
        if qualname not in self._foreign:
            self._foreign[qualname] = type(name, (Foreign,), {"qualname": qualname})
        return self._foreign[qualname]

    def load(self):
        try:
            return super().load()
        except MemoryError:  # a damaged memo index or length: the tree itself is small
            raise pickle.UnpicklingError("it asks for more memory than any checkpoint") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        if not isinstance(pid[1], np.dtype):
            kind = getattr(pid[1], "qualname", pid[1])
            raise pickle.UnpicklingError(f"a storage of a type that cannot be read, {kind}")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("a view of a storage (pre-1.6 PyTorch); re-save it")
        return self._storages(pid[1], str(pid[2]), int(pid[4]))


def plain(obj: Any, storages: dict[str, np.ndarray] | None = None) -> Any:
    """`obj` with pending tensors filled from `storages` and pickled modules as their state
    dicts; other foreign objects stay `Foreign`."""
    if isinstance(obj, _PendingTensor):
        return _tensor((storages or {})[obj.storage.key], obj.offset, obj.size, obj.stride)
    if isinstance(obj, Foreign):
        return state_dict(obj, storages) if obj.is_module() else obj
    if isinstance(obj, dict):
        return type(obj)((k, plain(v, storages)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v, storages) for v in obj)
    return obj


def state_dict(module: Foreign, storages=None) -> collections.OrderedDict:
    """What `module.state_dict()` returns: parameters, then persistent buffers, then each
    child's under its name, depth first."""
    out: collections.OrderedDict = collections.OrderedDict()

    def walk(m: Foreign, prefix: str) -> None:
        state = m.state
        skip = state.get("_non_persistent_buffers_set") or ()
        entries = list((state.get("_parameters") or {}).items())
        entries += [(k, v) for k, v in (state.get("_buffers") or {}).items() if k not in skip]
        for name, value in entries:
            if value is not None:
                out[prefix + name] = plain(value, storages)
        for name, child in (state.get("_modules") or {}).items():
            if isinstance(child, Foreign) and child.is_module():
                walk(child, f"{prefix}{name}.")

    walk(module, "")
    return out
