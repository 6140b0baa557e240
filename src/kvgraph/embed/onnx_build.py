"""Build the ONNX file of a BERT sentence-transformers model from its weights, without torch.

all-MiniLM-L6-v2 and models fine-tuned from it are BERT encoders: embeddings, N identical
transformer layers, and mean pooling. This module writes that encoder directly as the graph
onnxruntime's BERT optimizer would make of a torch export (``EmbedLayerNormalization``, one
``Attention`` per layer with Q/K/V packed, ``SkipLayerNormalization``, ``BiasGelu``), from the
weights read with :mod:`kvgraph.embed.weights`, then quantizes it with onnxruntime as before.
The file is the same graph with the same weights as the torch route gave, so the vectors are
too (tests/embed/test_onnx_build.py; bench/embed_build.py), and preparing it needs no torch,
takes a few seconds, and shows its steps.

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


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise MissingPackageError("onnx", "needed once to prepare the embedding model", "pip install onnx") from e
    return onnx


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


def build_bert(model_dir: Path, config: dict[str, Any], out: Path, progress: Callable[[str], None]) -> None:
    """Write the fused fp32 ONNX graph of the BERT encoder in ``model_dir`` to ``out``."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    progress("reading the weights")
    w = _Weights(read_weights(model_dir), model_dir)
    progress("building the ONNX graph")
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    activation = _ACTIVATIONS[str(config.get("hidden_act", "gelu"))]
    ms = "com.microsoft"

    inits: list[Any] = []
    nodes: list[Any] = []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array, name))
        return name

    def linear(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        # torch stores (out, in); MatMul wants (in, out)
        return np.ascontiguousarray(w(f"{prefix}.weight").T), w(f"{prefix}.bias")

    for name in ("input_ids", "token_type_ids", "attention_mask"):
        nodes.append(helper.make_node("Cast", [name], [f"{name}_int32"], to=TensorProto.INT32))
    nodes.append(
        helper.make_node(
            "EmbedLayerNormalization",
            [
                "input_ids_int32",
                "token_type_ids_int32",
                init("embeddings.word_embeddings.weight", w("embeddings.word_embeddings.weight")),
                init("embeddings.position_embeddings.weight", w("embeddings.position_embeddings.weight")),
                init("embeddings.token_type_embeddings.weight", w("embeddings.token_type_embeddings.weight")),
                init("embeddings.LayerNorm.weight", w("embeddings.LayerNorm.weight")),
                init("embeddings.LayerNorm.bias", w("embeddings.LayerNorm.bias")),
                "attention_mask_int32",
            ],
            ["embeddings", "mask_index"],  # mask_index: tokens per text (texts are padded on the right)
            domain=ms,
            epsilon=eps,
        )
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
        nodes.append(
            helper.make_node(
                "Attention",
                [
                    x,
                    init(f"{p}.attention.qkv.weight", np.concatenate([q[0], k[0], v[0]], axis=1)),
                    init(f"{p}.attention.qkv.bias", np.concatenate([q[1], k[1], v[1]])),
                    "mask_index",
                ],
                [f"{p}.attention.context"],
                domain=ms,
                num_heads=heads,
            )
        )
        wo, bo = linear(f"{p}.attention.output.dense")
        nodes.append(
            helper.make_node(
                "MatMul",
                [f"{p}.attention.context", init(f"{p}.attention.output.dense.weight", wo)],
                [f"{p}.attention.dense"],
            )
        )
        nodes.append(
            helper.make_node(
                "SkipLayerNormalization",
                [
                    f"{p}.attention.dense",
                    x,
                    init(f"{p}.attention.output.LayerNorm.weight", w(f"{p}.attention.output.LayerNorm.weight")),
                    init(f"{p}.attention.output.LayerNorm.bias", w(f"{p}.attention.output.LayerNorm.bias")),
                    init(f"{p}.attention.output.dense.bias", bo),
                ],
                [f"{p}.attention.output"],
                domain=ms,
                epsilon=eps,
            )
        )
        wi, bi = linear(f"{p}.intermediate.dense")
        nodes.append(
            helper.make_node(
                "MatMul",
                [f"{p}.attention.output", init(f"{p}.intermediate.dense.weight", wi)],
                [f"{p}.intermediate.dense"],
            )
        )
        nodes.append(
            helper.make_node(
                activation,
                [f"{p}.intermediate.dense", init(f"{p}.intermediate.dense.bias", bi)],
                [f"{p}.intermediate.output"],
                domain=ms,
            )
        )
        wout, bout = linear(f"{p}.output.dense")
        nodes.append(
            helper.make_node(
                "MatMul", [f"{p}.intermediate.output", init(f"{p}.output.dense.weight", wout)], [f"{p}.output.dense"]
            )
        )
        out_name = "last_hidden_state" if last else f"{p}.output"
        nodes.append(
            helper.make_node(
                "SkipLayerNormalization",
                [
                    f"{p}.output.dense",
                    f"{p}.attention.output",
                    init(f"{p}.output.LayerNorm.weight", w(f"{p}.output.LayerNorm.weight")),
                    init(f"{p}.output.LayerNorm.bias", w(f"{p}.output.LayerNorm.bias")),
                    init(f"{p}.output.dense.bias", bout),
                ],
                [out_name],
                domain=ms,
                epsilon=eps,
            )
        )
        x = out_name

    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden])
    graph = helper.make_graph(nodes, "bert_encoder", inputs, [output], initializer=inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(ms, 1)],
        ir_version=IR_VERSION,
        producer_name="kvgraph",
    )
    onnx.save(model, str(out))


def quantize_int8(src: Path, dst: Path) -> None:
    """int8 weights for the MatMuls and the fused attention's Q/K/V projection (dynamic activations)."""
    _import_onnx()
    import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 weights of the MatMuls and Attention: ~2x torch's throughput, SQuAD
    # retrieval unchanged (bench/README.md, "Embedding").
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
