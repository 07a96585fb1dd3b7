"""Reading `.safetensors` files (Hugging Face's weights format) without the library.

The format is a little-endian uint64 N, then N bytes of JSON mapping each tensor's name to its
{"dtype", "shape", "data_offsets": [begin, end]} (offsets into the bytes after the header; a
"__metadata__" entry holds strings), then the tensors' bytes, row-major. It is what
`safetensors.torch.save_file` and `huggingface_hub.PyTorchModelHubMixin.save_pretrained` write
for a plain `nn.Module` such as the authors' models. Reading it needs no pickle at all; bfloat16
and float8 come through ml_dtypes, which jax ships.

Shared tensors: one a model holds under several names (the authors' rotary `freqs`, one module
in every layer) is saved once by `safetensors.torch.save_model`, and its metadata maps each
other name to the kept one; `load` gives it under every name again, as `state_dict()` does,
and `save(..., shared=)` writes such a group as the library does, so that its `load_model`
(strict) loads the file into their model.
"""

from __future__ import annotations

import json
import os
import struct

import ml_dtypes
import numpy as np

from llp_jax import paths
from llp_jax.errors import LLPError

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}  # fmt: skip
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_MAX_HEADER = 100 * 2**20  # the library's own limit


class SafetensorsError(LLPError):
    """A `.safetensors` file that cannot be read; the message says why."""


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether the file starts as a safetensors file does: a header size, then a JSON object."""
    try:
        with paths.resolve(path).open("rb") as f:
            head = f.read(9)
    except (OSError, paths.StorageError):
        return False
    return len(head) == 9 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0]


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The file's tensors by name, as NumPy arrays (copies); `path` may be a URL.

    Raises:
      SafetensorsError: cut short, a header that is not the format's, or an unknown dtype.
    """
    path = os.fspath(path)
    try:
        data = paths.resolve(path).read_bytes()
    except FileNotFoundError:
        raise SafetensorsError(f"{path} does not exist") from None
    except OSError as e:
        raise SafetensorsError(f"{path} cannot be read ({e})") from None
    (size,) = struct.unpack("<Q", data[:8]) if len(data) >= 8 else (0,)
    if not 2 <= size <= min(_MAX_HEADER, len(data) - 8):
        raise SafetensorsError(f"{path} is cut short or not a safetensors file")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, ValueError) as e:
        raise SafetensorsError(f"{path}: its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: its header is not a JSON object")
    body = memoryview(data)[8 + size :]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = (
                _DTYPES[entry["dtype"]],
                entry["shape"],
                entry["data_offsets"],
            )
        except (KeyError, TypeError, ValueError):
            kind = entry.get("dtype") if isinstance(entry, dict) else entry
            raise SafetensorsError(f"{path}: tensor {name!r} is not readable ({kind!r})") from None
        good = isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)
        count = int(np.prod(shape, dtype=object)) if good else -1
        if not (good and isinstance(begin, int) and isinstance(end, int)) or not (
            0 <= begin <= end <= len(body) and end - begin == count * dtype.itemsize
        ):
            raise SafetensorsError(f"{path}: tensor {name!r} lies outside the file: cut short?")
        out[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()
    metadata = header.get("__metadata__")
    for alias, kept in metadata.items() if isinstance(metadata, dict) else ():
        if alias not in out and kept in out:  # a shared tensor, saved once
            out[alias] = out[kept]
    return out


def save(tensors: dict[str, np.ndarray], path: str, shared: list[list[str]] = ()) -> None:
    """Writes `tensors` as a `.safetensors` file, atomically (`paths.atomic_file`); each group
    of names in `shared` is one tensor, kept under its first name in sorted order (the
    library's choice) and the others named in the metadata."""
    aliases = {}
    for group in shared:
        kept, *others = sorted(group)
        aliases.update({name: kept for name in others})
    header, chunks, offset = ({"__metadata__": aliases} if aliases else {}), [], 0
    for name in sorted(n for n in tensors if n not in aliases):
        array = np.ascontiguousarray(tensors[name])
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}  # fmt: skip
        chunks.append(raw)
        offset += len(raw)
    raw_header = json.dumps(header, separators=(",", ":")).encode()
    raw_header += b" " * (-len(raw_header) % 8)  # the library aligns the tensors to 8 bytes
    with paths.atomic_file(path) as f:
        f.write(struct.pack("<Q", len(raw_header)) + raw_header)
        for chunk in chunks:
            f.write(chunk)
