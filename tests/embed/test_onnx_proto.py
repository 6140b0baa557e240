"""kvgraph's ONNX writer (kvgraph.embed.onnx_proto): onnxruntime runs what it writes, and with the onnx
package installed, its bytes are the ones onnx.helper and protobuf's serializer would write."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from kvgraph.embed import onnx_proto as proto
from kvgraph.embed.onnx_build import import_onnxruntime

X = np.array([[0.5, -1.0, 2.0], [3.0, 0.25, -0.75]], dtype=np.float32)
W = np.arange(6, dtype=np.float32).reshape(3, 2) / 4
PADS = np.array([0, 1, 0, 1], dtype=np.int64)


def _every_kind_of_field() -> proto.Message:
    """A graph with each attribute type, raw and typed tensors, fixed and symbolic dimensions, two domains."""
    nodes = [
        proto.node("Transpose", ["x"], ["transposed"], name="t", perm=[1, 0]),  # ints
        proto.node("Softmax", ["x"], ["softmax"], axis=-1),  # a negative int: 10-byte varint
        proto.node("LeakyRelu", ["x"], ["leaky"], alpha=0.1),  # float
        proto.node("Constant", [], ["row"], value_floats=[1.0, -2.5, 3.0]),  # floats
        proto.node("Add", ["leaky", "row"], ["shifted"]),
        proto.node("Constant", [], ["two"], value=np.array(2.0, dtype=np.float32)),  # tensor
        proto.node("Mul", ["shifted", "two"], ["doubled"]),
        proto.node("Pad", ["x", "pads"], ["padded"], mode="reflect"),  # string
        proto.node("MatMul", ["x", "w"], ["product"], domain=""),
        proto.node("Gelu", ["product"], ["gelu"], domain="com.microsoft"),
    ]
    inits = [proto.tensor("w", W), proto.tensor("pads", PADS, raw=False)]
    outputs = [
        proto.value_info("transposed", proto.FLOAT, [3, "n"]),
        proto.value_info("softmax", proto.FLOAT, ["n", 3]),
        proto.value_info("doubled", proto.FLOAT, ["n", 3]),
        proto.value_info("padded", proto.FLOAT, ["n", 5]),
        proto.value_info("gelu", proto.FLOAT, ["n", 2]),
    ]
    graph = proto.graph(nodes, "fields", [proto.value_info("x", proto.FLOAT, ["n", 3])], outputs, inits)
    return proto.model(graph, [("", 17), ("com.microsoft", 1)], 8, producer_name="kvgraph")


def test_onnxruntime_runs_what_it_writes_without_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # an import of onnx now fails
    ort = import_onnxruntime()
    session = ort.InferenceSession(_every_kind_of_field().tobytes(), providers=["CPUExecutionProvider"])
    transposed, softmax, doubled, padded, gelu = session.run(None, {"x": X})
    np.testing.assert_array_equal(transposed, X.T)
    e = np.exp(X - X.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax, e / e.sum(axis=1, keepdims=True), rtol=1e-6)
    leaky = np.where(X > 0, X, np.float32(0.1) * X)
    np.testing.assert_allclose(doubled, (leaky + np.array([1.0, -2.5, 3.0], dtype=np.float32)) * 2, rtol=1e-6)
    np.testing.assert_array_equal(padded, np.pad(X, ((0, 0), (1, 1)), mode="reflect"))
    product = X @ W
    np.testing.assert_allclose(gelu, product * 0.5 * (1 + np.vectorize(math.erf)(product / np.sqrt(2))), atol=1e-6)


def test_same_bytes_as_onnx_helper() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    h = helper
    nodes = [
        h.make_node("Transpose", ["x"], ["transposed"], name="t", perm=[1, 0]),
        h.make_node("Softmax", ["x"], ["softmax"], axis=-1),
        h.make_node("LeakyRelu", ["x"], ["leaky"], alpha=0.1),
        h.make_node("Constant", [], ["row"], value_floats=[1.0, -2.5, 3.0]),
        h.make_node("Add", ["leaky", "row"], ["shifted"]),
        h.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, dtype=np.float32), "")),
        h.make_node("Mul", ["shifted", "two"], ["doubled"]),
        h.make_node("Pad", ["x", "pads"], ["padded"], mode="reflect"),
        h.make_node("MatMul", ["x", "w"], ["product"], domain=""),
        h.make_node("Gelu", ["product"], ["gelu"], domain="com.microsoft"),
    ]
    inits = [numpy_helper.from_array(W, "w"), h.make_tensor("pads", onnx.TensorProto.INT64, [4], PADS.tolist())]
    f = onnx.TensorProto.FLOAT
    outputs = [
        h.make_tensor_value_info("transposed", f, [3, "n"]),
        h.make_tensor_value_info("softmax", f, ["n", 3]),
        h.make_tensor_value_info("doubled", f, ["n", 3]),
        h.make_tensor_value_info("padded", f, ["n", 5]),
        h.make_tensor_value_info("gelu", f, ["n", 2]),
    ]
    graph = h.make_graph(nodes, "fields", [h.make_tensor_value_info("x", f, ["n", 3])], outputs, initializer=inits)
    opsets = [h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)]
    model = h.make_model(graph, opset_imports=opsets, ir_version=8, producer_name="kvgraph")
    assert _every_kind_of_field().tobytes() == model.SerializeToString()


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.5, -2.0]], dtype=np.float32),
        np.array([-128, 0, 5, 127], dtype=np.int8),
        np.array([0, 200, 255], dtype=np.uint8),
        np.array([-(2**31), -1, 2**31 - 1], dtype=np.int32),
        np.array([[-(2**62), 0, 2**40]], dtype=np.int64),
        np.zeros((0, 3), dtype=np.float32),
    ],
    ids=["float32", "int8", "uint8", "int32", "int64", "empty"],
)
def test_typed_and_raw_tensors_read_back_in_onnx(array: np.ndarray) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    for raw in (True, False):
        written = proto.tensor("t", array, raw=raw).tobytes()
        parsed = onnx.TensorProto.FromString(written)
        assert parsed.HasField("raw_data") == raw
        back = numpy_helper.to_array(parsed)
        assert back.dtype == array.dtype and np.array_equal(back, array)
        expected = (
            numpy_helper.from_array(array, "t")
            if raw
            else onnx.helper.make_tensor("t", proto.data_type(array.dtype), array.shape, array.ravel().tolist())
        )
        assert written == expected.SerializeToString()


def test_what_it_cannot_write_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="complex64"):
        proto.tensor("c", np.zeros(2, dtype=np.complex64))
    with pytest.raises(ValueError, match="attribute 'perm': an empty list"):
        proto.attribute("perm", [])
    # big-endian input is written little-endian, as ONNX files are
    assert (
        proto.tensor("b", np.array([1.0], dtype=">f4")).tobytes() == proto.tensor("b", np.array([1.0], "<f4")).tobytes()
    )
