"""The int8 model written without onnx is the file onnxruntime's quantizer made before (issue 16).

Until issue 16, preparing the default model wrote the fp32 graph with ``onnx.helper`` and quantized it
with ``onnxruntime.quantization.quantize_dynamic`` (``kvgraph.embed.onnx_build.quantize_int8``, still
used for graphs kvgraph does not write). Now ``build_bert`` writes the int8 graph itself. These tests
compare the two while the onnx package is installed (``kvgraph[dev]``) and skip without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kvgraph.embed.local import default_model_path
from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.embed.onnx_build import PrepareProgress, build_bert, quantize_columns, quantize_int8
from kvgraph.text import split_sentences
from support import require_dataset

MODEL_DIR = Path(default_model_path())
CONFIG = json.loads((MODEL_DIR / "config.json").read_text(encoding="utf-8"))


def _quiet(step: str) -> None:
    pass


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """50 texts: Llama 2 sentences of every length, passages past the 256-token window, odd ones."""
    text = require_dataset("llama2", "llama2_paper.md").read_text(encoding="utf-8")
    found = [text[start:end].strip() for start, end in split_sentences(text)]
    found = [s for s in found if len(s.split()) >= 3]
    sentences = found[:: len(found) // 30][:30]
    passages = [" ".join(found[i : i + 25]) for i in range(0, 250, 25)]  # truncated at 256 tokens
    odd = [
        "",
        "a",
        "?",
        "Llama 2 " * 300,
        "Ünïcödé façade, naïve café",
        "数据集和模型的评估",
        "def f(x):\n    return x ** 2",
        "3.14159 2.71828 1.41421 0.57721",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
        "emoji 🙂🙃 and a tab\tinside",
    ]
    return sentences + passages + odd


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The int8 file of the old path (fp32 build + quantize_dynamic) and of the new one (written as int8)."""
    pytest.importorskip("onnx")
    work = tmp_path_factory.mktemp("int8")
    out = {name: work / f"{name}.onnx" for name in ("fp32", "quantizer", "built")}
    build_bert(MODEL_DIR, CONFIG, out["fp32"], _quiet, "fp32")
    quantize_int8(out["fp32"], out["quantizer"])
    build_bert(MODEL_DIR, CONFIG, out["built"], _quiet, "int8")
    return out


def test_same_file_as_the_quantizer_but_for_its_producer_fields(files: dict[str, Path]) -> None:
    onnx = pytest.importorskip("onnx")
    theirs = onnx.load(str(files["quantizer"]))
    ours = files["built"].read_bytes()
    assert onnx.load_from_string(ours).SerializeToString() == ours  # written as protobuf itself writes
    # What the quantizer adds: its name, a metadata entry for its own shape inference, and an explicit
    # data_location=DEFAULT on the float tensors it saved and reloaded. The rest must be equal: the
    # nodes, their order and names, every weight, scale and zero point, bit for bit.
    assert (theirs.producer_name, [p.key for p in theirs.metadata_props]) == ("onnx.quantize", ["onnx.infer"])
    theirs.producer_name = "kvgraph"
    theirs.ClearField("producer_version")
    theirs.ClearField("metadata_props")
    for t in theirs.graph.initializer:
        t.ClearField("data_location")
    assert theirs.SerializeToString() == ours


def test_fp32_file_is_what_onnx_would_write(files: dict[str, Path]) -> None:
    onnx = pytest.importorskip("onnx")
    ours = files["fp32"].read_bytes()
    model = onnx.load_from_string(ours)
    assert model.SerializeToString() == ours
    assert (model.ir_version, [(o.domain, o.version) for o in model.opset_import]) == (
        8,
        [("", 17), ("com.microsoft", 1)],
    )
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Attention") == ops.count("SkipLayerNormalization") // 2 == CONFIG["num_hidden_layers"]


def test_a_file_prepared_before_stays_valid_and_gives_the_same_vectors(
    files: dict[str, Path], texts: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cache key (model name, weights fingerprint, EXPORT_VERSION 2) did not change, so a cache
    # prepared by an earlier kvgraph is used as it is; its vectors are the new file's, bit for bit.
    monkeypatch.setenv("KVGRAPH_CACHE_DIR", str(tmp_path / "before"))
    path = OnnxEmbedder(quantization="int8").prepare()
    path.write_bytes(files["quantizer"].read_bytes())  # what the old path left in the cache
    reports: list[PrepareProgress] = []
    before = OnnxEmbedder(quantization="int8")
    assert before.prepare(progress=reports.append) == path and reports == []
    old = before.embed(texts)

    monkeypatch.setenv("KVGRAPH_CACHE_DIR", str(tmp_path / "now"))
    now = OnnxEmbedder(quantization="int8")
    new = now.embed(texts)
    assert now.onnx_path() != path and now.onnx_path().read_bytes() == files["built"].read_bytes()
    assert np.array_equal(new, old), np.abs(new - old).max()
    # the file changed nothing a batch of 8 would see either (one activation scale per batch)
    batched = {name: OnnxEmbedder(quantization="int8", batch_size=8) for name in ("before", "now")}
    vectors = {}
    for name, emb in batched.items():
        monkeypatch.setenv("KVGRAPH_CACHE_DIR", str(tmp_path / name))
        vectors[name] = emb.embed(texts)
    assert np.array_equal(vectors["before"], vectors["now"])


def test_weight_quantization_is_the_quantizers_on_edge_columns() -> None:
    onnx = pytest.importorskip("onnx")
    from onnxruntime.quantization.quant_utils import quantize_data

    rng = np.random.default_rng(7)
    weight = rng.normal(0, 0.05, (64, 6)).astype(np.float32)
    weight[:, 1] = 0.0  # a zero column: scale 1
    weight[:, 2] = np.abs(weight[:, 2])  # no negative value
    weight[:, 3] = 1e-40  # denormals: a scale below float32's smallest normal, so scale 1 too
    # scale 2**-7 exactly, and values at k + 0.5 once divided: rounded half to even (0, 2, 2, -0)
    weight[:, 4] = 0.0
    weight[:5, 4] = np.array([127, 0.5, 1.5, 2.5, -0.5], dtype=np.float32) / 128
    weight[:, 5] = np.linspace(-3, 3, 64, dtype=np.float32)
    values, scale = quantize_columns(weight)
    for j in range(weight.shape[1]):
        zero, s, q = quantize_data(weight[:, j].copy(), onnx.TensorProto.INT8, symmetric=True)
        assert zero == 0 and s.dtype == np.float32 and s == scale[j], j
        assert np.array_equal(q, values[:, j]), j
    assert scale[1] == scale[3] == 1.0 and values.dtype == np.int8
    assert scale[4] == 2**-7 and values[:5, 4].tolist() == [127, 0, 2, 2, 0]
