"""Reading and writing PyTorch's `torch.save` files without PyTorch.

`torch.save` (PyTorch >= 1.6) writes a zip archive: `<name>/data.pkl` is a protocol-2 pickle of
the object in which every tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, hooks)` and every storage a persistent id `('storage', torch.FloatStorage,
key, location, numel)` whose bytes are the archive member `<name>/data/<key>`. `load` unpickles
with an allow-list of exactly those globals (as `torch.load(weights_only=True)` does), so a file
can never run code; `save` writes the same layout, which `torch.load` reads back.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from llp_jax import paths
from llp_jax.errors import LLPError

# Storage class -> NumPy dtype (bfloat16 through ml_dtypes, which jax ships).
_STORAGES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_DTYPE_STORAGE = {dtype: name for name, dtype in _STORAGES.items()}


class TorchFormatError(LLPError):
    """A file that is not a readable `torch.save` archive; the message says why."""


class _Storage:
    def __init__(self, dtype: np.dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *rest):
    del requires_grad, hooks, rest
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride)
    )
    return np.array(view)  # a contiguous copy, independent of the shared storage


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        allowed = {
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("collections", "OrderedDict"): collections.OrderedDict,
        }
        if (module, name) in allowed:
            return allowed[module, name]
        if module == "torch" and name in _STORAGES:
            return _Storage(_STORAGES[name])
        raise TorchFormatError(
            f"{self._path}: holds a {module}.{name} object; only tensors, dicts, lists and "
            "numbers can be read (as torch.load(weights_only=True) does)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchFormatError(f"{self._path}: unknown persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except KeyError:
                raise TorchFormatError(f"{self._path}: storage {key} is missing") from None
            self._storages[key] = np.frombuffer(raw, dtype=storage_type.dtype)
        return self._storages[key]


def load(path: str | os.PathLike) -> Any:
    """The object a `torch.save` file holds, with every tensor as a NumPy array.

    Raises:
      TorchFormatError: not a zip-format torch file (e.g. the legacy pre-1.6 format), damaged,
        or holding objects other than tensors and plain containers.
    """
    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise TorchFormatError(f"{path} does not exist") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise TorchFormatError(
            f"{path} is not a torch.save zip archive ({e}); re-save it with PyTorch >= 1.6"
        ) from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise TorchFormatError(f"{path} has no single data.pkl: not a torch.save archive")
        prefix = pickles[0][: -len("data.pkl")]
        try:
            byteorder = archive.read(f"{prefix}byteorder").decode()
        except KeyError:
            byteorder = "little"
        if byteorder != "little":
            raise TorchFormatError(f"{path}: {byteorder}-endian tensors are not supported")
        try:
            with archive.open(pickles[0]) as f:
                return _Unpickler(io.BytesIO(f.read()), archive, prefix, path).load()
        except (pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile) as e:
            raise TorchFormatError(f"{path} is damaged ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- writing
class _Writer:
    """Pickle protocol 2 opcodes for the objects a state dict holds (see `save`)."""

    def __init__(self):
        self.out = io.BytesIO()
        self.storages: list[np.ndarray] = []

    def op(self, data: bytes) -> None:
        self.out.write(data)

    def value(self, obj) -> None:  # noqa: C901 (one branch per type)
        if isinstance(obj, np.generic):
            obj = obj.item()
        if obj is None:
            self.op(b"N")
        elif obj is True or obj is False:
            self.op(b"\x88" if obj else b"\x89")
        elif isinstance(obj, int):
            if -(2**31) <= obj < 2**31:
                self.op(b"J" + struct.pack("<i", obj))
            else:
                raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
                self.op(b"\x8a" + bytes([len(raw)]) + raw)
        elif isinstance(obj, float):
            self.op(b"G" + struct.pack(">d", obj))
        elif isinstance(obj, str):
            raw = obj.encode("utf-8")
            self.op(b"X" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(obj, tuple):
            self.op(b"(")
            for item in obj:
                self.value(item)
            self.op(b"t")
        elif isinstance(obj, list):
            self.op(b"]")
            if obj:
                self.op(b"(")
                for item in obj:
                    self.value(item)
                self.op(b"e")
        elif isinstance(obj, dict):
            if isinstance(obj, collections.OrderedDict):
                self.op(b"ccollections\nOrderedDict\n)R")
            else:
                self.op(b"}")
            if obj:
                self.op(b"(")
                for key, item in obj.items():
                    self.value(key)
                    self.value(item)
                self.op(b"u")
        elif isinstance(obj, np.ndarray):
            self.tensor(obj)
        else:
            raise TypeError(f"cannot write a {type(obj).__name__} into a torch file")

    def tensor(self, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if array.dtype not in _DTYPE_STORAGE:
            raise TypeError(f"no torch storage for dtype {array.dtype}")
        key = str(len(self.storages))
        self.storages.append(array)
        strides = tuple(s // array.itemsize for s in array.strides)
        self.op(b"ctorch._utils\n_rebuild_tensor_v2\n(")  # GLOBAL, then MARK of its arguments
        self.op(b"(")  # the storage's persistent id: ('storage', type, key, 'cpu', numel)
        self.value("storage")
        self.op(f"ctorch\n{_DTYPE_STORAGE[array.dtype]}\n".encode())
        self.value(key)
        self.value("cpu")
        self.value(int(array.size))
        self.op(b"tQ")  # TUPLE, BINPERSID
        self.value(0)  # storage offset
        self.value(tuple(int(n) for n in array.shape))
        self.value(strides)
        self.value(False)  # requires_grad
        self.op(b"ccollections\nOrderedDict\n)R")  # backward hooks
        self.op(b"tR")  # TUPLE, REDUCE


def save(obj: Any, path: str | os.PathLike) -> None:
    """Writes `obj` (dicts, lists, tuples, str, numbers, None and NumPy arrays as tensors) in the
    `torch.save` zip format, atomically (`paths.atomic_file`)."""
    path = os.fspath(path)
    writer = _Writer()
    writer.op(b"\x80\x02")
    writer.value(obj)
    writer.op(b".")
    name = os.path.splitext(os.path.basename(path))[0] or "archive"
    with paths.atomic_file(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{name}/data.pkl", writer.out.getvalue())
        archive.writestr(f"{name}/.format_version", "1")
        archive.writestr(f"{name}/byteorder", "little")
        for key, array in enumerate(writer.storages):
            archive.writestr(f"{name}/data/{key}", array.tobytes())
        archive.writestr(f"{name}/version", "3\n")
