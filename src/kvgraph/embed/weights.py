"""Read a model directory's weights into numpy arrays, without torch.

Two formats:

- ``model.safetensors`` (and sharded ``model.safetensors.index.json``): a JSON header of names,
  dtypes, shapes and byte ranges, then the raw little-endian tensors. The format is simple by
  design; reading it here (instead of the ``safetensors`` package) costs no dependency and
  handles bfloat16, which numpy has no dtype for.
- ``pytorch_model.bin`` as ``torch.save`` writes it since torch 1.6: a zip file holding a pickle of
  the state dict and one raw file per storage. The pickle is read with an unpickler that accepts
  only the few classes a state dict of tensors needs, so a hostile file cannot run code. The
  older non-zip format needs torch itself.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.errors import InvalidInputError, MissingDependencyError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"

# safetensors dtype -> numpy dtype ("BF16" is widened to float32 by hand)
_ST_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}
# torch storage class name -> numpy dtype (torch.save writes little-endian on every platform we run on)
_TORCH_STORAGES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",  # widened to float32 by hand
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


def weight_files(model_dir: Path) -> list[Path]:
    """The files :func:`read_weights` would read, in order (empty when the directory has none)."""
    if (model_dir / SAFETENSORS).is_file():
        return [model_dir / SAFETENSORS]
    index = model_dir / SAFETENSORS_INDEX
    if index.is_file():
        shards = _read_index(index)
        return [model_dir / name for name in sorted(set(shards.values()))]
    if (model_dir / PYTORCH_BIN).is_file():
        return [model_dir / PYTORCH_BIN]
    return []


def read_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """All tensors of the model directory by name (safetensors first, then pytorch_model.bin)."""
    files = weight_files(model_dir)
    if not files:
        raise InvalidInputError(
            f"{model_dir}: no weights found (needs {SAFETENSORS}, {SAFETENSORS_INDEX} or {PYTORCH_BIN})"
        )
    tensors: dict[str, np.ndarray] = {}
    for path in files:
        tensors.update(read_torch_bin(path) if path.name.endswith(".bin") else read_safetensors(path))
    return tensors


def _read_index(index: Path) -> dict[str, str]:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInputError(f"{index}: not a safetensors index ({e})") from e
    return {str(k): str(v) for k, v in weight_map.items()}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of one ``.safetensors`` file (copied out of the file, so it can be closed)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    try:
        if data.size < 8:
            raise ValueError("file shorter than its header length")
        (header_len,) = struct.unpack("<Q", data[:8].tobytes())
        if header_len > data.size - 8:
            raise ValueError(f"header length {header_len} past the end of the file")
        header = json.loads(data[8 : 8 + header_len].tobytes())
        body = data[8 + header_len :]
        out: dict[str, np.ndarray] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            if not 0 <= start <= end <= body.size:
                raise ValueError(f"tensor {name!r}: byte range {start}..{end} outside the file")
            raw = body[start:end]
            if dtype == "BF16":
                out[name] = _bf16_to_f32(raw.view("<u2")).reshape(shape)
            elif dtype in _ST_DTYPES:
                out[name] = np.array(raw.view(_ST_DTYPES[dtype]).reshape(shape))
            else:
                raise ValueError(f"tensor {name!r}: dtype {dtype} is not supported")
        return out
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInputError(f"{path}: not a readable safetensors file ({e})") from e
    finally:
        del data


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: shift the 16 bits up."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class _Storage:
    """A torch storage of the pickle: its elements, read from the zip member named by its key."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> np.ndarray:
    elements = storage.array[offset:]
    if any(int(n) == 0 for n in size):
        return np.zeros(tuple(size), dtype=elements.dtype)
    # as_strided reads whatever memory it is told to: the last element must lie inside the storage
    last = sum((int(n) - 1) * int(s) for n, s in zip(size, stride, strict=True))
    if offset < 0 or any(int(s) < 0 for s in stride) or last >= elements.size:
        raise ValueError(f"tensor of size {tuple(size)} does not fit its storage of {storage.array.size} elements")
    return np.lib.stride_tricks.as_strided(
        elements, shape=tuple(size), strides=tuple(s * elements.itemsize for s in stride)
    ).copy()


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict into numpy arrays; any other class is refused."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _TORCH_STORAGES:
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a plain state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage class, key, location, element count)
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and pid[1] in _TORCH_STORAGES):
            raise pickle.UnpicklingError(f"unsupported storage reference {pid!r}")
        array = np.frombuffer(self._archive.read(f"{self._prefix}/data/{pid[2]}"), dtype=_TORCH_STORAGES[pid[1]])
        return _Storage(_bf16_to_f32(array) if pid[1] == "BFloat16Storage" else array)


def read_torch_bin(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a ``pytorch_model.bin`` (torch's zip format) as numpy arrays, without torch."""
    if not zipfile.is_zipfile(path):
        return _read_legacy_torch_bin(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ValueError("no data.pkl in the archive")
            prefix = pickles[0][: -len("/data.pkl")]
            with archive.open(pickles[0]) as f:
                state = _StateDictUnpickler(f, archive, prefix).load()
    except (pickle.UnpicklingError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise InvalidInputError(
            f"{path}: not a plain torch state dict ({e}); save the model with safetensors instead"
        ) from e
    if not isinstance(state, dict):
        raise InvalidInputError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return {str(k): v for k, v in state.items() if isinstance(v, np.ndarray)}


def _read_legacy_torch_bin(path: Path) -> dict[str, np.ndarray]:
    """torch.save's pre-1.6 format (not a zip): only torch itself reads it."""
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError(f"torch (to read {os.fspath(path)}, saved in torch's old format)", "local") from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {str(k): v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}
