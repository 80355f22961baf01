"""Reading PyTorch ``.pth`` files without torch: a restricted unpickler that builds NumPy arrays.

A ``.pth`` file is a pickle whose tensors point ("persistent ids") at raw storages kept beside it. Two layouts
exist and both are read here:

* the zip layout (``torch.save`` since torch 1.6): a zip archive ``<name>/data.pkl`` + ``<name>/data/<key>``
  (one raw little-endian storage per key) + ``<name>/byteorder``;
* the legacy layout (``_use_new_zipfile_serialization=False``, and torchvision's 2019 checkpoints): three small
  pickles (magic number, protocol version, system info), the main pickle, a pickle of the storage keys, then
  each storage as an 8-byte little-endian element count followed by its bytes.

The unpickler resolves only the globals a state dict needs (``collections.OrderedDict``, the typed storage
classes as markers, ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` as array builders); any other
global (``os.system``, ``builtins.eval``, a model class...) is refused before anything is called, so no code in
the file runs. Sizes are checked before bytes are read (a storage must hold what its tensors view; the total is
capped), so a zip bomb or a truncated file is an error that names the file, never a crash or a hang.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

#: The most storage bytes one file may hold (torchvision's largest detection checkpoints are < 1 GB).
MAX_STORAGE_BYTES = 8 << 30
#: The most bytes the pickle itself may take (a state dict's pickle is a few hundred KB).
MAX_PICKLE_BYTES = 256 << 20
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

#: storage class name -> (NumPy dtype of the raw bytes, little-endian)
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),  # the top 16 bits of a float32: widened in _as_numpy
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(ValueError):
    """A ``.pth`` file that cannot be read safely: not a torch file, truncated, too large, or holding a global
    other than a state dict's."""


class _StorageType:
    """The marker a pickled ``torch.<Kind>Storage`` global becomes."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Storage:
    """One raw storage: its element type and count; its bytes are read when a tensor is made an array."""

    def __init__(self, kind: _StorageType, key: str, numel: int, read: Callable[[str, int], bytes]) -> None:
        self.kind, self.key, self.numel, self._read = kind, key, numel, read
        self._array: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self._array is None:
            dtype = STORAGE_DTYPES[str(self.kind.name)]
            data = self._read(self.key, int(self.numel) * dtype.itemsize)
            self._array = np.frombuffer(data, dtype=dtype, count=int(self.numel))
        return self._array


class _Tensor:
    """A tensor as pickled: a view (offset, size, stride, in elements) of a storage; made an array at the end."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_numpy(self) -> np.ndarray:
        """The tensor's values (a copy); bfloat16 widened to float32 exactly. The view is checked here, against
        the bytes actually read, so nothing in the pickle can make it read outside its storage."""
        storage, offset, size, stride = self.storage, self.offset, self.size, self.stride
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor whose storage is not a storage reference")
        if not (
            isinstance(size, tuple)
            and isinstance(stride, tuple)
            and len(size) == len(stride)
            and all(type(v) is int and v >= 0 for v in (offset, *size, *stride))
        ):
            raise pickle.UnpicklingError(
                f"a tensor with an invalid view: offset {offset!r}, size {size!r}, stride {stride!r}"
            )
        base = storage.array()
        if not all(size):
            array = np.zeros(size, base.dtype)
        else:
            if offset + sum((n - 1) * s for n, s in zip(size, stride)) >= base.size:
                raise pickle.UnpicklingError(f"a tensor of size {size} reads past its storage of {base.size} elements")
            itemsize = base.dtype.itemsize
            array = np.array(
                np.lib.stride_tricks.as_strided(
                    base[offset:], shape=size, strides=[s * itemsize for s in stride], writeable=False
                )
            )
        if storage.kind.name == "BFloat16Storage":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    if not isinstance(data, _Tensor):
        raise pickle.UnpicklingError("a parameter whose data is not a tensor")
    return data


#: the only globals a state dict's pickle may name
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, storage: Callable[[tuple], _Storage]) -> None:
        super().__init__(file, encoding="utf-8")
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)  # a new marker each time: nothing a pickle does to it outlives the file
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"it names the global {module}.{name}, which a state dict never holds "
                "(refused: unpickling it could run code)"
            )
        return found

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"an unknown persistent reference {str(pid)[:80]}")
        return self._storage(pid)


def _storage_of(pid: tuple, read: Callable[[str, int], bytes], seen: dict[str, _Storage]) -> _Storage:
    """The storage a persistent id ``('storage', type, key, location, numel[, view])`` names (one per key)."""
    _, kind, key, _location, numel, *view = pid
    if not isinstance(kind, _StorageType) or kind.name not in STORAGE_DTYPES:
        raise pickle.UnpicklingError(f"a storage of unknown type {kind!r}")
    if view and view[0] is not None:
        raise pickle.UnpicklingError("a legacy storage view (torch < 0.4) is not supported")
    if not isinstance(numel, int) or numel < 0 or numel * STORAGE_DTYPES[kind.name].itemsize > MAX_STORAGE_BYTES:
        raise pickle.UnpicklingError(f"storage {key} declares {numel!r} elements")
    key = str(key)
    if key in seen:
        if seen[key].numel != numel or seen[key].kind.name != kind.name:
            raise pickle.UnpicklingError(f"storage {key} is declared twice with different sizes")
        return seen[key]
    seen[key] = _Storage(kind, key, numel, read)
    return seen[key]


def _load_zip(archive: zipfile.ZipFile) -> Any:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError("it is a zip file without exactly one <name>/data.pkl: not a torch.save file")
    prefix = pickles[0][: -len("data.pkl")]
    if prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() not in (b"little", b""):
        raise CheckpointError("its storages are big-endian, which kzoo does not read")
    infos = {info.filename: info for info in archive.infolist()}
    if infos[pickles[0]].file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"its pickle declares {infos[pickles[0]].file_size} bytes (over {MAX_PICKLE_BYTES})")
    total = 0

    def read(key: str, nbytes: int) -> bytes:
        nonlocal total
        info = infos.get(f"{prefix}data/{key}")
        if info is None:
            raise CheckpointError(f"storage data/{key} is missing from the archive")
        if info.file_size < nbytes:
            raise CheckpointError(f"storage data/{key} holds {info.file_size} bytes, its tensors need {nbytes}")
        total += nbytes
        if total > MAX_STORAGE_BYTES:
            raise CheckpointError(f"its storages exceed {MAX_STORAGE_BYTES} bytes")
        with archive.open(info) as f:
            data = f.read(nbytes)
        if len(data) != nbytes:
            raise CheckpointError(f"storage data/{key} is truncated")
        return data

    seen: dict[str, _Storage] = {}
    with archive.open(pickles[0]) as f:
        pickled = f.read(MAX_PICKLE_BYTES + 1)
    return _RestrictedUnpickler(io.BytesIO(pickled), lambda pid: _storage_of(pid, read, seen)).load()


def _no_storage(pid: Any) -> _Storage:
    raise pickle.UnpicklingError("a storage reference in the file's header")


def _load_legacy(f: io.BufferedIOBase, file_size: int) -> Any:
    if _RestrictedUnpickler(f, _no_storage).load() != _LEGACY_MAGIC:
        raise CheckpointError("it is neither a zip archive nor a legacy torch file (wrong magic number)")
    if _RestrictedUnpickler(f, _no_storage).load() != 1001:
        raise CheckpointError("it has an unknown legacy protocol version")
    info = _RestrictedUnpickler(f, _no_storage).load()
    if not isinstance(info, dict) or not info.get("little_endian", True):
        raise CheckpointError("its storages are big-endian, which kzoo does not read")
    seen: dict[str, _Storage] = {}
    data: dict[str, bytes] = {}
    state = _RestrictedUnpickler(f, lambda pid: _storage_of(pid, lambda key, _: data[key], seen)).load()
    keys = _RestrictedUnpickler(f, _no_storage).load()
    if not isinstance(keys, list) or sorted(str(k) for k in keys) != sorted(seen):
        raise CheckpointError("its list of storages does not match the tensors")
    for key in keys:
        storage = seen[str(key)]
        header = f.read(8)
        if len(header) != 8:
            raise CheckpointError(f"it is truncated (storage {key} is missing)")
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * STORAGE_DTYPES[storage.kind.name].itemsize
        if numel != storage.numel or nbytes > file_size - f.tell():
            raise CheckpointError(f"storage {key} holds {numel} elements, not {storage.numel}, or is truncated")
        data[str(key)] = f.read(nbytes)
    return state


def _arrays(state: Any) -> dict[str, np.ndarray]:
    """``{key: array}`` of a state dict (or of a training checkpoint's ``"model"`` entry), the file's order."""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a training checkpoint (torchvision's references/detection/train.py)
    if not isinstance(state, dict):
        raise CheckpointError(f"it holds a {type(state).__name__}, not a state dict")
    arrays = {}
    for key, value in state.items():
        if isinstance(value, _Tensor):
            array = value.to_numpy()
            arrays[str(key)] = array.astype(np.float32) if array.dtype.kind == "f" else array
    if not arrays:
        raise CheckpointError("it holds no tensors")
    return arrays


def read_torchvision_checkpoint(pth_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A PyTorch ``.pth`` state dict as NumPy arrays, read without torch (and without running any code in it).

    Args:
        pth_path: a file written by ``torch.save(model.state_dict(), ...)`` in the zip or the legacy layout, or a
            training checkpoint with a ``"model"`` entry (the rest of it is ignored).

    Returns:
        ``{key: array}`` in the file's order: floating tensors (float64/32/16, bfloat16) as float32 ``[*size]``,
        integer and bool tensors in their own dtype (int64 ``num_batches_tracked`` scalars have shape ``()``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): the message names the file and the problem: not a torch file,
            truncated, a storage larger than :data:`MAX_STORAGE_BYTES`, a global other than a state dict's.
    """
    pth_path = os.fspath(pth_path)
    if not os.path.isfile(pth_path):
        raise FileNotFoundError(f"torchvision checkpoint not found: {pth_path}")
    try:
        if zipfile.is_zipfile(pth_path):
            with zipfile.ZipFile(pth_path) as archive:
                return _arrays(_load_zip(archive))
        with open(pth_path, "rb") as f:
            return _arrays(_load_legacy(f, os.path.getsize(pth_path)))
    except CheckpointError as error:
        raise CheckpointError(f"cannot read {pth_path} as a torch checkpoint: {error}") from None
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        struct.error,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        MemoryError,
        RecursionError,
        UnicodeDecodeError,
    ) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read {pth_path} as a torch checkpoint: {reason}") from None
