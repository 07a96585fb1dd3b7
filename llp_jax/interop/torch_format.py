"""Reading and writing PyTorch's `torch.save` files without PyTorch.

`torch.save` (PyTorch >= 1.6) writes a zip archive: `<name>/data.pkl` is a protocol-2 pickle of
the object in which every tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, hooks)` and every storage a persistent id `('storage', torch.FloatStorage,
key, location, numel)` whose bytes are the archive member `<name>/data/<key>`; the legacy
format before it (`_legacy`) keeps the same pickle and storages in one stream. `load` unpickles
with `torch_pickle`'s allow-list, so a file can never run code, and reads a whole pickled
model as its state dict; `save` writes the zip layout, which `torch.load` reads back."""

from __future__ import annotations

import collections
import contextlib
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
from llp_jax.interop import torch_pickle

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


def load(path: str | os.PathLike) -> Any:
    """The object a `torch.save` file holds, with every tensor as a NumPy array and every
    pickled `torch.nn.Module` as its state dict (`torch_pickle`).

    Reads the zip format (PyTorch >= 1.6) and the legacy one before it (still written with
    `_use_new_zipfile_serialization=False`), from a local path or a URL (gs://...). No code of
    the file runs.

    Raises:
      TorchFormatError: not a torch file, damaged, or holding at its top an object other than
        tensors, plain containers and modules.
    """
    path = os.fspath(path)
    try:
        with paths.local_copy(path) as local:
            try:
                archive = zipfile.ZipFile(local)
            except zipfile.BadZipFile:
                obj = _legacy(local, path)
            else:
                with archive:
                    obj = _zipped(path, archive)
    except FileNotFoundError:
        raise TorchFormatError(f"{path} does not exist") from None
    except OSError as e:
        raise TorchFormatError(f"{path} cannot be read ({e})") from None
    if (name := torch_pickle.foreign_name(obj)) is not None:
        raise TorchFormatError(
            f"{path}: holds a {name} object; only tensors, dicts, lists, numbers and "
            "torch modules can be read (nothing of the file runs)"
        )
    return obj


def _zipped(path: str, archive: zipfile.ZipFile) -> Any:
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
    storages: dict[str, np.ndarray] = {}

    def storage(dtype: np.dtype, key: str, numel: int) -> np.ndarray:
        if key not in storages:
            try:
                raw = archive.read(f"{prefix}data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"storage {key} is missing") from None
            storages[key] = np.frombuffer(raw, dtype=dtype)
        return storages[key]

    with _damage(path):
        with archive.open(pickles[0]) as f:
            obj = torch_pickle.Unpickler(io.BytesIO(f.read()), _STORAGES, storage).load()
        return torch_pickle.plain(obj)


# `torch.save(..., _use_new_zipfile_serialization=False)`: pickles of the magic number, the
# protocol version and the system's sizes, then the object (storages as persistent ids), then
# the sorted list of storage keys, then each storage as int64 element count + its bytes.
_LEGACY_MAGIC, _LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


def _legacy(local: str, path: str) -> Any:
    not_torch = TorchFormatError(
        f"{path} is not a torch.save file (neither the zip format nor the legacy one)"
    )
    pending: dict[str, torch_pickle.Pending] = {}

    def storage(dtype: np.dtype, key: str, numel: int) -> torch_pickle.Pending:
        return pending.setdefault(key, torch_pickle.Pending(key, dtype))

    def unpickle(f) -> Any:
        return torch_pickle.Unpickler(_Capped(f), _STORAGES, storage).load()

    with open(local, "rb") as f:
        try:
            if unpickle(f) != _LEGACY_MAGIC:
                raise not_torch
        except Exception:  # noqa: BLE001 (any bytes that are no pickle of the magic number)
            raise not_torch from None
        with _damage(path):
            if unpickle(f) != _LEGACY_PROTOCOL:
                raise pickle.UnpicklingError("an unknown legacy protocol version")
            info = unpickle(f)
            if isinstance(info, dict) and info.get("little_endian") is False:
                raise TorchFormatError(f"{path}: big-endian tensors are not supported")
            obj, keys = unpickle(f), unpickle(f)
            storages, size = {}, os.fstat(f.fileno()).st_size
            for key in keys:
                (numel,) = struct.unpack("<q", f.read(8))
                dtype = pending[key].dtype if key in pending else np.dtype("u1")
                if not 0 <= numel * dtype.itemsize <= size - f.tell():  # (a damaged count)
                    raise EOFError(f"storage {key} is cut short")
                raw = f.read(numel * dtype.itemsize)
                storages[key] = np.frombuffer(raw, dtype=dtype)
            return torch_pickle.plain(obj, storages)


class _Capped:
    """A file whose reads stop at its end: a damaged length in a pickle then reads short (an
    error the unpickler names) instead of asking memory for the length (MemoryError)."""

    def __init__(self, f):
        self._f, self._size = f, os.fstat(f.fileno()).st_size

    def read(self, n: int = -1) -> bytes:
        left = max(self._size - self._f.tell(), 0)
        return self._f.read(left if n is None or n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self._f.readline()


@contextlib.contextmanager
def _damage(path: str):
    """A file that stops making sense part way is damaged: one error naming why."""
    try:
        yield
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OverflowError, RecursionError, struct.error, zipfile.BadZipFile) as e:  # fmt: skip
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
