"""Build the ONNX file of a BERT sentence-transformers model from its weights, without torch or onnx.

all-MiniLM-L6-v2 and models fine-tuned from it are BERT encoders: embeddings, N identical
transformer layers, and mean pooling. This module writes that encoder directly as the graph
onnxruntime's BERT optimizer would make of a torch export (``EmbedLayerNormalization``, one
``Attention`` per layer with Q/K/V packed, ``SkipLayerNormalization``, ``BiasGelu``), from the
weights read with :mod:`kvgraph.embed.weights`, through the protobuf writer
:mod:`kvgraph.embed.onnx_proto`. The int8 file is written directly too: the weights quantized
per channel with onnxruntime's arithmetic (:func:`quantize_columns`) and the node pattern its
``quantize_dynamic`` produces. The fp32 file is byte for byte the one ``onnx.helper`` wrote
before, the int8 file the one ``quantize_dynamic`` wrote but for its producer fields, so the
vectors are the same as the torch route's (tests/embed/test_onnx_build.py, test_onnx_int8.py;
bench/embed_build.py); preparing it needs neither torch nor the ``onnx`` package, takes about a
second and shows its steps.

:func:`quantize_int8` (onnxruntime's quantizer, which needs ``onnx``) remains for the graphs
kvgraph does not write itself: a model's own ``onnx/model.onnx`` and torch exports.

Pooling and normalisation stay outside the graph (``OnnxEmbedder.embed`` does them in numpy), so
a model directory that ships its own ``onnx/model.onnx`` (which outputs ``last_hidden_state``)
runs through the same code.

onnxruntime's official wheels send usage events to Microsoft unless ``ORT_DISABLE_TELEMETRY=1``
is set before the runtime starts (see ``onnxruntime/Privacy.md``): :func:`import_onnxruntime`
sets it, unless the user set it, and every import of onnxruntime in kvgraph goes through it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.embed import onnx_proto as proto
from kvgraph.embed.weights import read_weights, weight_files
from kvgraph.errors import InvalidInputError, KvgraphError, MissingDependencyError

log = logging.getLogger("kvgraph.embed")

# config.json's hidden_act -> the fused activation op (both take the dense layer's bias)
_ACTIVATIONS = {"gelu": "BiasGelu", "gelu_new": "FastGelu", "gelu_pytorch_tanh": "FastGelu"}
# sentence-transformers modules (by class name) that the ONNX embedder reproduces: the encoder is
# the graph, pooling and normalisation are done in numpy
_KNOWN_MODULES = {"Transformer", "Pooling", "Normalize"}
_POOLING_MODES = {"pooling_mode_mean_tokens", "pooling_mode_cls_token"}
OPSET = 17
IR_VERSION = 8  # the IR of opset 17: older onnxruntime releases refuse newer IRs
MS = "com.microsoft"  # the domain of onnxruntime's fused operators


@dataclass(frozen=True)
class PrepareProgress:
    """One report of :meth:`OnnxEmbedder.prepare`: ``step`` starts now, ``done`` of ``total`` steps are finished.

    The last report has ``done == total`` (``step`` is then "ready").
    """

    step: str
    done: int
    total: int


ProgressCallback = Callable[[PrepareProgress], None]


class Steps:
    """Reports the steps of one preparation to a callback (if any) and to the ``kvgraph.embed`` log."""

    def __init__(self, callback: ProgressCallback | None, total: int, model: str) -> None:
        self.callback = callback
        self.total = total
        self.model = model
        self.started = 0

    def __call__(self, step: str) -> None:
        """``step`` starts now; the one before it, if any, is finished."""
        log.info("preparing the embedding model %s (once): %s", self.model, step)
        if self.callback is not None:
            self.callback(PrepareProgress(step, min(self.started, self.total), self.total))
        self.started += 1

    def wait(self) -> None:
        """Another process holds the lock: it is preparing the same file."""
        log.info("waiting for another process to prepare the embedding model %s", self.model)
        if self.callback is not None:
            self.callback(PrepareProgress("waiting for another process preparing it", 0, self.total))

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(PrepareProgress("ready", self.total, self.total))


class MissingPackageError(MissingDependencyError):
    """A package needed to prepare or run the embedding model is missing; the message has the install line."""

    def __init__(self, package: str, purpose: str, install: str) -> None:
        # MissingDependencyError's own message names a kvgraph extra; these packages have none
        KvgraphError.__init__(self, f"{package} ({purpose}) is not installed: {install}")


def import_onnxruntime() -> Any:
    """onnxruntime, with its telemetry off unless the user asked for it (``ORT_DISABLE_TELEMETRY=0``)."""
    # Read once, when the runtime starts: it must be in the environment before the first import.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise MissingPackageError("onnxruntime", "runs the embedding model", "pip install onnxruntime") from e
    if os.environ.get("ORT_DISABLE_TELEMETRY") == "1":
        ort.disable_telemetry_events()  # for a runtime started before the variable was set
    return ort


def require_onnx(purpose: str) -> None:
    """Raise :class:`MissingPackageError` ("onnx (``purpose``) is not installed: pip install onnx") without onnx.

    Only graphs that kvgraph does not write itself need it (a model's own ONNX file, a torch
    export): it is not a dependency of kvgraph, ``kvgraph[local]`` brings it.
    """
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise MissingPackageError("onnx", purpose, "pip install onnx") from e


def unsupported_reason(model_dir: Path, config: dict[str, Any]) -> str | None:
    """Why :func:`build_bert` cannot build this model directory (None: it can)."""
    if config.get("model_type") != "bert":
        return f"model_type {config.get('model_type')!r} (only 'bert' is built without torch)"
    if config.get("hidden_act", "gelu") not in _ACTIVATIONS:
        return f"hidden_act {config.get('hidden_act')!r}"
    if config.get("position_embedding_type", "absolute") != "absolute":
        return f"position_embedding_type {config.get('position_embedding_type')!r}"
    if config.get("is_decoder") or config.get("add_cross_attention"):
        return "a decoder configuration"
    if not weight_files(model_dir):
        return "no model.safetensors or pytorch_model.bin"
    return None


def pipeline_problem(modules: Any, pooling: dict[str, Any]) -> str | None:
    """What of a sentence-transformers pipeline the ONNX embedder would not reproduce (None: nothing).

    ``modules``: the parsed ``modules.json`` (absent: []); ``pooling``: ``1_Pooling/config.json``.
    The embedder runs the encoder, then mean (or CLS) pooling and L2 normalisation; a Dense layer
    or another pooling mode would be skipped and give wrong vectors without a word.
    """
    types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []
    extra = [t for t in types if t.rsplit(".", 1)[-1] not in _KNOWN_MODULES]
    if extra:
        return f"modules.json has {', '.join(extra)}"
    other = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and k not in _POOLING_MODES]
    if other:
        return f"1_Pooling/config.json asks for {', '.join(other)}"
    return None


class _Weights:
    """The encoder's tensors by their BertModel names, whatever prefix the checkpoint used."""

    def __init__(self, tensors: dict[str, np.ndarray], model_dir: Path) -> None:
        anchor = "embeddings.word_embeddings.weight"
        prefixes = [name[: -len(anchor)] for name in tensors if name.endswith(anchor)]
        if len(prefixes) != 1:
            raise InvalidInputError(f"{model_dir}: the weights have no single BERT encoder ({anchor} not found once)")
        self.prefix = prefixes[0]
        self.tensors = tensors
        self.model_dir = model_dir

    def __call__(self, name: str) -> np.ndarray:
        full = self.prefix + name
        found = self.tensors.get(full)
        if found is None and name.endswith(("LayerNorm.weight", "LayerNorm.bias")):  # old checkpoints: gamma/beta
            found = self.tensors.get(full.replace(".weight", ".gamma").replace(".bias", ".beta"))
        if found is None:
            raise InvalidInputError(f"{self.model_dir}: weight {full!r} is missing; not a BERT encoder checkpoint")
        return np.ascontiguousarray(found, dtype=np.float32)


def quantize_columns(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 values and one float32 scale per column of a MatMul weight (in, out), zero points 0.

    The numbers of onnxruntime's ``quantize_dynamic(per_channel=True, weight_type=QInt8)``
    (``quant_utils.compute_scale_zp`` and ``quantize_nparray``): symmetric, scale =
    max|column| * 2 / 254 computed in float64 and stored as float32, values = round half to even
    of weight / scale in float32, clipped to int8. The same operations in the same precision, so
    the same bytes (tests/embed/test_onnx_int8.py).
    """
    absmax = np.abs(weight).max(axis=0)  # = max(|min(column, 0)|, max(column, 0)), exactly
    scale64 = absmax.astype(np.float64) * 2.0 / 254.0
    # a column of zeros (or denormals) gets scale 1, as onnxruntime gives it
    scale = np.where(scale64 < np.finfo(np.float32).tiny, 1.0, scale64).astype(np.float32)
    values = np.clip(np.round(weight / scale), -128, 127).astype(np.int8)
    return values, scale


# the inputs, in the order of their Cast nodes
_CAST_ORDER = ("input_ids", "token_type_ids", "attention_mask")


class _Graph:
    """The nodes and initializers of the encoder, fp32 or with int8 weights.

    The int8 graph is the one onnxruntime's ``quantize_dynamic`` made of the fp32 graph (see
    :func:`quantize_int8`): each weight's MatMul becomes ``DynamicQuantizeLinear`` (uint8
    activations, one scale per run) + ``MatMulInteger`` + ``Cast`` + ``Mul`` by both scales, and
    ``Attention`` becomes ``QAttention``; the node and tensor names, the order of the nodes (its
    topological sort) and of the initializers (quantized weights last) are its too, so the file is
    the one it wrote but for the fields that name the producer (tests/embed/test_onnx_int8.py).
    """

    def __init__(self, int8: bool) -> None:
        self.int8 = int8
        self.nodes: list[proto.Message] = []
        self.inits: list[proto.Message] = []
        self.quantized_inits: list[proto.Message] = []

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(proto.tensor(name, array))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str], **kwargs: Any) -> None:
        self.nodes.append(proto.node(op_type, inputs, outputs, **kwargs))

    def _quantized_weight(self, name: str, weight: np.ndarray) -> tuple[str, str, str]:
        values, scale = quantize_columns(weight)
        names = (f"{name}_quantized", f"{name}_scale", f"{name}_zero_point")
        self.quantized_inits += [
            proto.tensor(names[1], scale, raw=False),
            proto.tensor(names[2], np.zeros(scale.shape, dtype=np.int8), raw=False),
            proto.tensor(names[0], values),
        ]
        return names

    def _quantized_input(self, x: str) -> tuple[str, str, str]:
        names = (f"{x}_quantized", f"{x}_scale", f"{x}_zero_point")
        self.node("DynamicQuantizeLinear", [x], list(names), name=f"{x}_QuantizeLinear")
        return names

    def matmul(self, x: str, weight_name: str, weight: np.ndarray, out: str) -> None:
        """``out = x @ weight``."""
        if not self.int8:
            self.node("MatMul", [x, self.init(weight_name, weight)], [out])
            return
        xq, xs, xz = self._quantized_input(x)
        wq, ws, wz = self._quantized_weight(weight_name, weight)
        scales = f"{xs}_{ws}_mul"
        self.node("Mul", [xs, ws], [f"{scales}:0"], name=scales)
        product = f"{out}_output_quantized"
        self.node("MatMulInteger", [xq, wq, xz, wz], [product])
        self.node("Cast", [product], [f"{product}_cast_output"], name=f"{product}_cast", to=proto.FLOAT)
        self.node("Mul", [f"{product}_cast_output", f"{scales}:0"], [out])

    def attention(self, x: str, prefix: str, qkv: tuple[np.ndarray, np.ndarray], heads: int, out: str) -> None:
        """Self-attention with Q, K and V packed in one weight (hidden, 3 * hidden) and bias."""
        if not self.int8:
            weight = self.init(f"{prefix}.qkv.weight", qkv[0])
            bias = self.init(f"{prefix}.qkv.bias", qkv[1])
            self.node("Attention", [x, weight, bias, "mask_index"], [out], domain=MS, num_heads=heads)
            return
        bias = self.init(f"{prefix}.qkv.bias", qkv[1])
        xq, xs, xz = self._quantized_input(x)
        wq, ws, wz = self._quantized_weight(f"{prefix}.qkv.weight", qkv[0])
        inputs = [xq, wq, bias, xs, ws, "mask_index", xz, wz, ""]  # "": no past state
        self.node("QAttention", inputs, [out], domain=MS, num_heads=heads)

    def model(self, hidden: int) -> proto.Message:
        names = ("input_ids", "attention_mask", "token_type_ids")
        inputs = [proto.value_info(name, proto.INT64, ["batch", "seq"]) for name in names]
        output = proto.value_info("last_hidden_state", proto.FLOAT, ["batch", "seq", hidden])
        # what onnx's shape inference, run by the quantizer, wrote into its file: kept for an identical graph
        inferred = (
            [proto.value_info(f"{n}_int32", proto.INT32, ["batch", "seq"]) for n in _CAST_ORDER] if self.int8 else []
        )
        graph = proto.graph(
            self.nodes, "bert_encoder", inputs, [output], [*self.inits, *self.quantized_inits], inferred
        )
        return proto.model(graph, [("", OPSET), (MS, 1)], IR_VERSION, producer_name="kvgraph")


def build_bert(
    model_dir: Path, config: dict[str, Any], out: Path, progress: Callable[[str], None], quantization: str = "fp32"
) -> None:
    """Write the fused ONNX graph of the BERT encoder in ``model_dir`` to ``out``, fp32 or int8.

    int8: per-channel int8 weights for the MatMuls and the attention's Q/K/V projection, dynamic
    uint8 activations; ~2x torch's throughput, SQuAD retrieval unchanged (bench/README.md,
    "Embedding"). The file onnxruntime's ``quantize_dynamic`` made of the fp32 one, written directly.
    """
    if quantization not in ("fp32", "int8"):
        raise InvalidInputError(f"quantization must be 'fp32' or 'int8', got {quantization!r}")
    progress("reading the weights")
    w = _Weights(read_weights(model_dir), model_dir)
    progress("building the ONNX graph")
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    activation = _ACTIVATIONS[str(config.get("hidden_act", "gelu"))]
    g = _Graph(int8=quantization == "int8")

    def linear(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        # torch stores (out, in); MatMul wants (in, out)
        return np.ascontiguousarray(w(f"{prefix}.weight").T), w(f"{prefix}.bias")

    def init(name: str) -> str:
        return g.init(name, w(name))

    # onnxruntime's quantizer sorted these three by input name; kept so the int8 file is its file
    for name in sorted(_CAST_ORDER) if g.int8 else _CAST_ORDER:
        g.node("Cast", [name], [f"{name}_int32"], to=proto.INT32)
    g.node(
        "EmbedLayerNormalization",
        [
            "input_ids_int32",
            "token_type_ids_int32",
            init("embeddings.word_embeddings.weight"),
            init("embeddings.position_embeddings.weight"),
            init("embeddings.token_type_embeddings.weight"),
            init("embeddings.LayerNorm.weight"),
            init("embeddings.LayerNorm.bias"),
            "attention_mask_int32",
        ],
        ["embeddings", "mask_index"],  # mask_index: tokens per text (texts are padded on the right)
        domain=MS,
        epsilon=eps,
    )
    x = "embeddings"
    for i in range(layers):
        p = f"encoder.layer.{i}"
        last = i == layers - 1
        q, k, v = (linear(f"{p}.attention.self.{part}") for part in ("query", "key", "value"))
        if q[0].shape != (hidden, hidden):
            raise InvalidInputError(
                f"{model_dir}: {p}.attention.self.query.weight is {q[0].shape}, not {hidden}x{hidden}"
            )
        qkv = (np.concatenate([q[0], k[0], v[0]], axis=1), np.concatenate([q[1], k[1], v[1]]))
        g.attention(x, f"{p}.attention", qkv, heads, f"{p}.attention.context")
        wo, bo = linear(f"{p}.attention.output.dense")
        g.matmul(f"{p}.attention.context", f"{p}.attention.output.dense.weight", wo, f"{p}.attention.dense")
        skip_inputs = [init(f"{p}.attention.output.LayerNorm.weight"), init(f"{p}.attention.output.LayerNorm.bias")]
        g.node(
            "SkipLayerNormalization",
            [f"{p}.attention.dense", x, *skip_inputs, g.init(f"{p}.attention.output.dense.bias", bo)],
            [f"{p}.attention.output"],
            domain=MS,
            epsilon=eps,
        )
        wi, bi = linear(f"{p}.intermediate.dense")
        g.matmul(f"{p}.attention.output", f"{p}.intermediate.dense.weight", wi, f"{p}.intermediate.dense")
        g.node(
            activation,
            [f"{p}.intermediate.dense", g.init(f"{p}.intermediate.dense.bias", bi)],
            [f"{p}.intermediate.output"],
            domain=MS,
        )
        wout, bout = linear(f"{p}.output.dense")
        g.matmul(f"{p}.intermediate.output", f"{p}.output.dense.weight", wout, f"{p}.output.dense")
        out_name = "last_hidden_state" if last else f"{p}.output"
        g.node(
            "SkipLayerNormalization",
            [
                f"{p}.output.dense",
                f"{p}.attention.output",
                init(f"{p}.output.LayerNorm.weight"),
                init(f"{p}.output.LayerNorm.bias"),
                g.init(f"{p}.output.dense.bias", bout),
            ],
            [out_name],
            domain=MS,
            epsilon=eps,
        )
        x = out_name
    g.model(hidden).write(out)


def quantize_int8(src: Path, dst: Path) -> None:
    """int8 weights for the MatMuls and the fused attention's Q/K/V projection (dynamic activations).

    onnxruntime's quantizer, for graphs not written by :func:`build_bert` (which writes its int8
    file itself, the same way): needs the ``onnx`` package.
    """
    require_onnx("needed once to quantize an ONNX graph to int8")
    import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 weights of the MatMuls and Attention: ~2x torch's throughput, SQuAD
    # retrieval unchanged (bench/README.md, "Embedding"). build_bert's int8 file follows these options.
    with _quiet_root_logging("onnxruntime"):
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": 1},  # FLOAT, for outputs of fused ops
        )


@contextlib.contextmanager
def _quiet_root_logging(package: str) -> Iterator[None]:
    """Drop what ``package`` logs through the root logger ("Please consider to run pre-processing..."),
    without changing the user's logging: a filter and, while none exists, a handler that keeps
    ``logging.warning`` from installing its default stderr handler for good."""
    root = logging.getLogger()
    marker = f"{os.sep}{package}{os.sep}"

    def keep(record: logging.LogRecord) -> bool:
        return marker not in record.pathname

    placeholder = logging.NullHandler() if not root.handlers else None
    root.addFilter(keep)
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeFilter(keep)
        if placeholder is not None:
            root.removeHandler(placeholder)
