"""Writes ONNX files without the ``onnx`` package: the few protobuf messages that kvgraph's models use.

An ONNX file is one ``ModelProto`` in protobuf's wire format (``onnx.proto``, syntax proto2).
:mod:`kvgraph.embed.onnx_build` writes its BERT graphs through this module, so preparing the
default model needs neither ``onnx`` (26 MB installed, with ml-dtypes and protobuf 31 MB) nor
protobuf. Only writing is supported, and only these messages: ``ModelProto``, ``GraphProto``,
``NodeProto``, ``AttributeProto`` (float, int, string, tensor, floats, ints), ``TensorProto``,
``ValueInfoProto`` with a tensor type and fixed or symbolic dimensions, ``OperatorSetIdProto``.

Field numbers are ``onnx.proto``'s. Each message writes its fields in field-number order and only
the fields given, with proto2's encodings (``dims``, ``floats`` and ``ints`` unpacked,
``float_data``/``int32_data``/``int64_data`` packed), which is what protobuf's own serializer does:
a model written here is byte for byte the one ``onnx.helper`` and ``onnx.save`` would write
(tests/embed/test_onnx_proto.py checks that while onnx is installed).

A message is kept as a list of parts, so tensors go from their numpy arrays to the file without
being copied into one buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# TensorProto.DataType
FLOAT = 1
UINT8 = 2
INT8 = 3
INT32 = 6
INT64 = 7
_DATA_TYPES = {
    np.dtype(np.float32): FLOAT,
    np.dtype(np.uint8): UINT8,
    np.dtype(np.int8): INT8,
    np.dtype(np.uint16): 4,
    np.dtype(np.int16): 5,
    np.dtype(np.int32): INT32,
    np.dtype(np.int64): INT64,
    np.dtype(np.bool_): 9,
    np.dtype(np.float16): 10,
    np.dtype(np.float64): 11,
}
# the types whose typed (not raw) values go to int32_data, as onnx.helper.make_tensor puts them
_INT32_DATA = {UINT8, INT8, 4, 5, INT32, 9}

# AttributeProto.AttributeType
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_TENSOR, _ATTR_FLOATS, _ATTR_INTS = 1, 2, 3, 4, 6, 7

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

AttributeValue = float | int | str | bytes | np.ndarray | Sequence[int] | Sequence[float]


def _varint(value: int) -> bytes:
    # negative int32/int64 values are written as their 64-bit two's complement (10 bytes)
    value &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varints(values: np.ndarray) -> bytes:
    flat = values.astype(np.int64, copy=False).ravel()
    if flat.size and flat.min() >= 0 and flat.max() < 0x80:  # one byte each: the common case
        return flat.astype(np.uint8).tobytes()
    return b"".join(_varint(int(v)) for v in flat)


class Message:
    """One protobuf message being written: its encoded parts, in order, and their total size."""

    def __init__(self) -> None:
        self.parts: list[bytes | memoryview] = []
        self.size = 0

    def _add(self, data: bytes | memoryview) -> None:
        self.parts.append(data)
        self.size += len(data)

    def _key(self, field: int, wire: int) -> None:
        self._add(_varint(field << 3 | wire))

    def varint(self, field: int, value: int) -> Message:
        self._key(field, _VARINT)
        self._add(_varint(value))
        return self

    def float32(self, field: int, value: float) -> Message:
        self._key(field, _FIXED32)
        self._add(struct.pack("<f", value))
        return self

    def blob(self, field: int, data: bytes | memoryview) -> Message:
        self._key(field, _LEN)
        self._add(_varint(len(data)))
        self._add(data)
        return self

    def string(self, field: int, text: str) -> Message:
        return self.blob(field, text.encode("utf-8"))

    def message(self, field: int, sub: Message) -> Message:
        self._key(field, _LEN)
        self._add(_varint(sub.size))
        self.parts.extend(sub.parts)
        self.size += sub.size
        return self

    def tobytes(self) -> bytes:
        return b"".join(self.parts)

    def write(self, path: Path) -> None:
        with open(path, "wb") as f:
            for part in self.parts:
                f.write(part)


def _le_bytes(array: np.ndarray) -> memoryview:
    """The array's elements, little-endian, C order, without a copy where they already are."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).reshape(-1).view(np.uint8).data


def data_type(dtype: np.dtype) -> int:
    """The ``TensorProto.DataType`` of a numpy dtype (ValueError for one ONNX has no type for here)."""
    found = _DATA_TYPES.get(np.dtype(dtype).newbyteorder("="))
    if found is None:
        raise ValueError(f"no ONNX tensor type for numpy dtype {dtype}")
    return found


def tensor(name: str, array: np.ndarray, raw: bool = True) -> Message:
    """A ``TensorProto``: ``raw_data`` (as ``onnx.numpy_helper.from_array``), or with ``raw=False`` the
    typed field (``float_data``, ``int32_data``, ``int64_data``), as ``onnx.helper.make_tensor``."""
    kind = data_type(array.dtype)
    m = Message()
    for d in array.shape:
        m.varint(1, d)  # dims: repeated int64, unpacked
    m.varint(2, kind)
    if not raw and array.size:  # protobuf writes no packed field for no values
        if kind == FLOAT:
            m.blob(4, _le_bytes(array))  # float_data: packed fixed32
        elif kind in _INT32_DATA:
            m.blob(5, _varints(array))
        elif kind == INT64:
            m.blob(7, _varints(array))
        else:
            raise ValueError(f"tensor {name!r}: no typed field for {array.dtype} (use raw=True)")
    if name:  # a tensor attribute's value has none
        m.string(8, name)
    if raw:
        m.blob(9, _le_bytes(array))
    return m


def attribute(name: str, value: AttributeValue) -> Message:
    """An ``AttributeProto``, typed from the value as ``onnx.helper.make_attribute`` does."""
    m = Message().string(1, name)
    if isinstance(value, bool | int | np.integer):
        m.varint(3, int(value)).varint(20, _ATTR_INT)
    elif isinstance(value, float | np.floating):
        m.float32(2, float(value)).varint(20, _ATTR_FLOAT)
    elif isinstance(value, str | bytes):
        m.blob(4, value.encode("utf-8") if isinstance(value, str) else value).varint(20, _ATTR_STRING)
    elif isinstance(value, np.ndarray):
        m.message(5, tensor("", value)).varint(20, _ATTR_TENSOR)
    else:
        items = list(value)
        if not items:
            raise ValueError(f"attribute {name!r}: an empty list has no type")
        if all(isinstance(v, int | np.integer) for v in items):
            for v in items:
                m.varint(8, int(v))  # ints: repeated int64, unpacked
            m.varint(20, _ATTR_INTS)
        else:
            for v in items:
                m.float32(7, float(v))  # floats: repeated float, unpacked
            m.varint(20, _ATTR_FLOATS)
    return m


def node(
    op_type: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    name: str = "",
    domain: str | None = None,
    **attributes: AttributeValue,
) -> Message:
    """A ``NodeProto``; attributes in name order, as ``onnx.helper.make_node`` writes them."""
    m = Message()
    for i in inputs:
        m.string(1, i)
    for o in outputs:
        m.string(2, o)
    if name:
        m.string(3, name)
    m.string(4, op_type)
    for key in sorted(attributes):
        m.message(5, attribute(key, attributes[key]))
    if domain is not None:
        m.string(7, domain)
    return m


def value_info(name: str, elem_type: int, shape: Sequence[int | str]) -> Message:
    """A ``ValueInfoProto`` of a tensor; a dimension is a size (int) or a symbolic name (str)."""
    dims = Message()
    for d in shape:
        dim = Message().varint(1, d) if isinstance(d, int) else Message().string(2, d)
        dims.message(1, dim)
    tensor_type = Message().varint(1, elem_type).message(2, dims)
    return Message().string(1, name).message(2, Message().message(1, tensor_type))


def graph(
    nodes: Sequence[Message],
    name: str,
    inputs: Sequence[Message],
    outputs: Sequence[Message],
    initializers: Sequence[Message] = (),
    value_infos: Sequence[Message] = (),
) -> Message:
    """A ``GraphProto``."""
    m = Message()
    for n in nodes:
        m.message(1, n)
    m.string(2, name)
    for t in initializers:
        m.message(5, t)
    for i in inputs:
        m.message(11, i)
    for o in outputs:
        m.message(12, o)
    for v in value_infos:
        m.message(13, v)
    return m


def model(
    graph: Message,
    opsets: Sequence[tuple[str, int]],
    ir_version: int,
    producer_name: str = "",
    producer_version: str = "",
) -> Message:
    """A ``ModelProto``; ``opsets``: (domain, version) pairs, ``""`` being the default ONNX domain."""
    m = Message().varint(1, ir_version)
    if producer_name:
        m.string(2, producer_name)
    if producer_version:
        m.string(3, producer_version)
    m.message(7, graph)
    for domain, version in opsets:
        m.message(8, Message().string(1, domain).varint(2, version))
    return m
