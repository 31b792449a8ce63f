"""Read a PyTorch state dict saved in the legacy (pre-zip) format into numpy arrays, without torch.

The legacy file (`torch.save(..., _use_new_zipfile_serialization=False)`, PyTorch's format before 1.6) is
five pickles in a row: a magic number, the protocol version, system information (byte order, sizes), the
object itself, and the list of storage keys; then, for each key in that order, the storage's element count
as 8 little-endian bytes and its raw little-endian data. Inside the object, a tensor is a call of
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` whose storage is a persistent id
`("storage", storage type, key, device, element count)`.

Unpickling runs whatever a file names, so only the names a state dict needs are admitted (an ordered dict,
the tensor rebuild function, the storage types below); any other name is an error naming it.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeWeightsError(ValueError):
    """The file names something a state dict never needs: it is not read."""


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return name  # the storage type, resolved in persistent_load
        raise UnsafeWeightsError(f"refusing to unpickle {module}.{name}: not part of a state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and pid[1] in STORAGE_DTYPES):
            raise UnsafeWeightsError(f"unexpected persistent id {pid!r:.80}")
        return _Storage(str(pid[2]), STORAGE_DTYPES[pid[1]])


def _load(stream: BinaryIO) -> Any:
    return _StateDictUnpickler(stream).load()


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Parameter name → array (a copy, C-contiguous) for a legacy-format `.pth` file; a ValueError naming
    the file for anything else (a zip-format file, another magic number, a big-endian file, a truncated
    storage)."""
    path = Path(path)
    with path.open("rb") as stream:
        if stream.read(2) == b"PK":
            raise ValueError(f"{path}: a zip-format PyTorch file, not the legacy format this reads")
        stream.seek(0)
        if _load(stream) != LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy PyTorch file (wrong magic number)")
        if _load(stream) != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy protocol version")
        info = _load(stream)
        if not isinstance(info, dict) or not info.get("little_endian", False):
            raise ValueError(f"{path}: only little-endian files are read")
        state = _load(stream)
        keys = _load(stream)
        if not isinstance(state, dict) or not isinstance(keys, list):
            raise ValueError(f"{path}: no state dict in the file")
        storages = {}
        dtypes = {ref.storage.key: ref.storage.dtype for ref in state.values() if isinstance(ref, _TensorRef)}
        for key in keys:
            (count,) = struct.unpack("<q", stream.read(8))
            dtype = np.dtype(dtypes.get(str(key), np.uint8))
            data = stream.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise ValueError(f"{path}: storage {key} is truncated")
            storages[str(key)] = np.frombuffer(data, dtype=dtype.newbyteorder("<"))
    arrays = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise ValueError(f"{path}: entry {name!r} is not a tensor")
        flat = storages[ref.storage.key]
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset :], shape=ref.size, strides=tuple(s * itemsize for s in ref.stride)
        )
        arrays[str(name)] = np.array(view, dtype=flat.dtype.newbyteorder("="), copy=True)
    return arrays
