"""Sentence-transformers models run through onnxruntime: the default embedder.

Why ONNX: on this class of machine all-MiniLM-L6-v2 runs ~2x faster through onnxruntime
with int8 weights than through torch (see bench/README.md, "Embedding"), and importing
onnxruntime costs ~0.1 s against ~4 s for sentence-transformers, which keeps `kvgraph ask`
fast from a cold start. Retrieval quality is measured in the same benchmark.

The ONNX file is prepared once per model and cached under ``$KVGRAPH_CACHE_DIR`` (default
``~/.cache/kvgraph``): :meth:`OnnxEmbedder.prepare` (or the first embedding) makes it, under a
lock so that two processes never both do, and reports its steps to a callback. Where it comes
from, first match wins:

- the model directory's own ``onnx/model.onnx`` (fused by onnxruntime's BERT optimizer);
- a BERT model (all-MiniLM-L6-v2, its fine-tunes): built from the weights by
  :mod:`kvgraph.embed.onnx_build`, fp32 or int8, in ~1 s, without torch or the ``onnx`` package;
  the same graph and weights as the torch route;
- any other architecture: exported with torch (``pip install 'kvgraph[local]'``), then fused.

For a shipped graph and a torch export, the int8 file is then made by onnxruntime's quantizer,
which needs ``onnx`` (``kvgraph[local]`` brings it); the BERT builder writes its own.
onnxruntime is imported with its telemetry off (:func:`kvgraph.embed.onnx_build.import_onnxruntime`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.embed.onnx_build import (
    ProgressCallback,
    Steps,
    build_bert,
    import_onnxruntime,
    pipeline_problem,
    quantize_int8,
    require_onnx,
    unsupported_reason,
)
from kvgraph.embed.tokens import HFTokenCounter
from kvgraph.embed.weights import weight_files
from kvgraph.errors import InvalidInputError, MissingDependencyError

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
QUANTIZATIONS = ("int8", "fp32")
# Bumped whenever the exported graph changes its numbers, so that model names (and with them
# the embedding cache and a knowledge base's model check) never mix vectors of two exports.
# v2: eager attention export, so onnxruntime fuses attention and int8 covers Q/K/V too.
EXPORT_VERSION = 2
# Written by `kvgraph finetune embedder` into the model directory it makes: the base model, the
# data, the metrics and the weights' sha256. Its hash enters the model name and the export's
# fingerprint, so two fine-tunes saved under one directory name never share vectors or exports.
FINETUNE_CARD = "kvgraph_finetune.json"


def cache_dir() -> Path:
    return Path(os.environ.get("KVGRAPH_CACHE_DIR") or Path.home() / ".cache" / "kvgraph")


def _default_model_dir() -> Path:
    from kvgraph.embed.local import default_model_path

    return Path(default_model_path())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def resolve_model_dir(model: str | os.PathLike[str]) -> Path:
    """A local directory, or a model name found in the user's Hugging Face cache (never downloaded)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = str(model)
    hub = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"
    )
    repos = [name] if "/" in name else [f"sentence-transformers/{name}", name]
    for repo in repos:
        snapshots = hub / f"models--{repo.replace('/', '--')}" / "snapshots"
        if snapshots.is_dir():
            candidates = sorted(
                (p for p in snapshots.iterdir() if (p / "tokenizer.json").is_file()), key=os.path.getmtime
            )
            if candidates:
                return candidates[-1]
    return path  # not found: the constructor reports it as not a model directory


class OnnxEmbedder:
    """Embeds texts with a sentence-transformers model directory through onnxruntime.

    Vectors are mean-pooled (or CLS-pooled, as the model's pooling config says) and L2
    normalised. ``max_length`` defaults to the model's ``max_seq_length``; texts longer than
    that are truncated by the model, which is why the splitter counts tokens with
    :meth:`token_counter` and keeps chunks inside the window.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        quantization: str = "int8",
        batch_size: int | None = None,
        threads: int | None = None,
        max_length: int | None = None,
    ) -> None:
        if quantization not in QUANTIZATIONS:
            raise InvalidInputError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
        self.model_dir = resolve_model_dir(model_dir) if model_dir is not None else _default_model_dir()
        if not (self.model_dir / "tokenizer.json").is_file() or not (self.model_dir / "config.json").is_file():
            raise InvalidInputError(
                f"{self.model_dir}: not a sentence-transformers model directory (needs config.json and tokenizer.json)"
            )
        self.quantization = quantization
        # int8 activations are quantized with one scale per batch, so a text's vector would
        # depend on its batch neighbours (cosine 0.988-0.998 to itself alone). One text per run
        # keeps vectors reproducible, and on this machine it is no slower (bench/embed.py).
        self.batch_size = batch_size or (1 if quantization == "int8" else 8)
        self.threads = threads or min(os.cpu_count() or 1, 8)
        config = _read_json(self.model_dir / "config.json")
        st_config = _read_json(self.model_dir / "sentence_bert_config.json")
        pooling = _read_json(self.model_dir / "1_Pooling" / "config.json")
        self.pooling = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        self.max_length = int(
            max_length or st_config.get("max_seq_length") or config.get("max_position_embeddings", 512)
        )
        self.dim = int(config.get("hidden_size") or pooling.get("word_embedding_dimension") or 0)
        if model_dir is None:
            base = DEFAULT_MODEL_NAME
        elif Path(model_dir).expanduser().is_dir():
            base = self.model_dir.name
        else:  # a name resolved from the Hugging Face cache: name it by the model, not the snapshot hash
            base = str(model_dir).rsplit("/", 1)[-1]
        weights = str(_read_json(self.model_dir / FINETUNE_CARD).get("weights_sha256") or "")
        if weights:  # a fine-tuned directory: its name alone does not say which weights are in it
            base = f"{base}-{weights[:8]}"
        self.model_name = f"{base}@onnx-{quantization}-v{EXPORT_VERSION}"
        self._session: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._tokenizer: Any = None
        self._input_names: set[str] = set()

    def __repr__(self) -> str:
        return f"OnnxEmbedder({str(self.model_dir)!r}, quantization={self.quantization!r})"

    # ------------------------------------------------------------------ tokens

    def token_counter(self) -> HFTokenCounter:
        """Counts tokens exactly as this model sees them (without [CLS]/[SEP])."""
        return HFTokenCounter(self.model_dir / "tokenizer.json", max_tokens=self.max_length)

    def _tok(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
            tok.enable_truncation(max_length=self.max_length)
            tok.enable_padding()  # to the longest text of each batch
            self._tokenizer = tok
        return self._tokenizer

    # ------------------------------------------------------------------ model file

    def onnx_path(self) -> Path:
        """Where this model's ONNX file is; prepared (built or exported, then quantized) on first call."""
        return self.prepare()

    def is_prepared(self) -> bool:
        """True when the ONNX file is ready, so the first embedding will not stop to prepare it."""
        return self._ready_file() is not None

    def prepare(self, progress: ProgressCallback | None = None) -> Path:
        """Make this model's ONNX file once per machine (cached), reporting its steps; returns its path.

        ``progress`` gets a :class:`~kvgraph.embed.onnx_build.PrepareProgress` when each step starts
        and a last one with ``done == total`` ("ready"); nothing when the file is already there.
        all-MiniLM-L6-v2 takes ~1 s, without torch or onnx (bench/embed_build.py). When another
        process is preparing the same model, this one waits for it (one report) and uses its file.
        """
        ready = self._ready_file()
        if ready is not None:
            return ready
        target = self._cache_file()
        shipped = self._shipped_file()
        route = _route(self.model_dir, shipped)
        quantizing = self.quantization == "int8" and route != "bert"  # a step of its own
        steps = Steps(progress, len(_STEPS[route]) + quantizing, self.model_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        # One process prepares; others wait on the lock and then find the file.
        with open(target.parent / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                steps.wait()
                fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.is_file():
                _build_onnx(self.model_dir, route, shipped, target, self.quantization, steps)
        steps.finish()
        return target

    def _shipped_file(self) -> Path | None:
        shipped = self.model_dir / "onnx" / "model.onnx"
        return shipped if shipped.is_file() else None

    def _cache_file(self) -> Path:
        return (
            cache_dir()
            / "models"
            / f"{self.model_name.split('@')[0]}-{self._fingerprint()}-v{EXPORT_VERSION}"
            / f"model-{self.quantization}.onnx"
        )

    def _ready_file(self) -> Path | None:
        shipped = self._shipped_file()
        if shipped is not None and self.quantization == "fp32":
            return shipped
        target = self._cache_file()
        return target if target.is_file() else None

    def _fingerprint(self) -> str:
        """Changes when the weights change, so a cached export is never stale."""
        h = hashlib.sha256()
        shards = [p.name for p in weight_files(self.model_dir)]
        names = dict.fromkeys(["config.json", "model.safetensors", "pytorch_model.bin", FINETUNE_CARD, *shards])
        for name in names:
            p = self.model_dir / name
            if p.is_file():
                st = p.stat()
                h.update(f"{name}:{st.st_size}".encode())
                with open(p, "rb") as f:
                    h.update(f.read(1 << 20))
        return h.hexdigest()[:12]

    def _load(self) -> Any:
        if self._session is None:
            ort = import_onnxruntime()
            opts = ort.SessionOptions()
            # One thread per run, and `threads` runs at once (see embed()): on this CPU two
            # single-threaded runs side by side embed ~1.3x faster than one two-threaded run.
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            session = ort.InferenceSession(str(self.onnx_path()), opts, providers=["CPUExecutionProvider"])
            self._input_names = {i.name for i in session.get_inputs()}
            self._session = session
        return self._session

    # ------------------------------------------------------------------ embedding

    def token_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's token vectors (the model's last layer, one unit row per token the model sees,
        [CLS] and [SEP] included, padding not): what late interaction (``rerank = "tokens"``,
        :mod:`kvgraph.retrieve.tokens`) compares. Texts past the window are cut as ``embed`` cuts them."""
        if isinstance(texts, str):
            raise InvalidInputError("token_vectors() takes a list of texts, got a single string")
        out: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)

        def keep(idx: list[int], hidden: np.ndarray, mask: np.ndarray) -> None:
            for row, i in enumerate(idx):
                v = np.asarray(hidden[row, : int(mask[row].sum())], dtype=np.float32)
                out[i] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

        self._run_batches(texts, keep)
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a list of texts, got a single string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)

        def pool(idx: list[int], hidden: np.ndarray, mask: np.ndarray) -> None:
            if self.pooling == "cls":
                vecs = hidden[:, 0, :]
            else:
                m = mask[..., None].astype(np.float32)
                vecs = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out[idx] = vecs / np.maximum(norms, 1e-12)

        self._run_batches(texts, pool)
        return out

    def _run_batches(self, texts: Sequence[str], each: Callable[[list[int], np.ndarray, np.ndarray], None]) -> None:
        """Run the model over ``texts`` in batches, handing ``each`` a batch's text positions, last
        hidden layer and attention mask (several batches may run at once, on the executor's threads)."""
        if not texts:
            return
        session = self._load()
        tok = self._tok()
        # Batches of similar length waste little time on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[b : b + self.batch_size] for b in range(0, len(texts), self.batch_size)]

        def run(idx: list[int]) -> None:
            enc = tok.encode_batch([texts[i] for i in idx])
            ids = np.asarray([e.ids for e in enc], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            each(idx, session.run(None, feeds)[0], mask)  # run releases the GIL; one session serves all threads

        if self.threads <= 1 or len(batches) == 1:
            for idx in batches:
                run(idx)
        else:
            # Longest first, so the last batches to finish are the short ones.
            list(self._executor().map(run, reversed(batches)))

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="kvgraph-embed")
        return self._pool


# The steps of each way to make the file; "quantizing to int8" follows those of the shipped and
# torch routes, while the BERT builder writes its int8 file directly.
_STEPS = {
    "shipped": ["fusing the model's ONNX graph"],
    "bert": ["reading the weights", "building the ONNX graph"],
    "torch": ["exporting the model with torch", "fusing the ONNX graph"],
}


def _route(model_dir: Path, shipped: Path | None) -> str:
    """How the fp32 graph is made: from the shipped file, built from the weights, or exported with torch."""
    if shipped is not None:
        return "shipped"
    return "bert" if unsupported_reason(model_dir, _read_json(model_dir / "config.json")) is None else "torch"


def _check_pipeline(model_dir: Path) -> None:
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        modules = []
    problem = pipeline_problem(modules, _read_json(model_dir / "1_Pooling" / "config.json"))
    if problem:
        raise InvalidInputError(
            f"{model_dir}: {problem}, which the ONNX embedder does not run; "
            f"use the embedder sentence-transformers:{model_dir}"
        )


def _build_onnx(
    model_dir: Path, route: str, shipped: Path | None, target: Path, quantization: str, step: Steps
) -> None:
    """Make the graph (see :func:`_route`), quantize it to int8 if asked (and not built so), move it into place."""
    _check_pipeline(model_dir)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        result = Path(tmp) / "model-fp32.onnx"
        if route == "bert":
            result = Path(tmp) / f"model-{quantization}.onnx"
            build_bert(model_dir, _read_json(model_dir / "config.json"), result, step, quantization)
        else:
            if route == "shipped" and shipped is not None:
                # without onnx the fusion falls back to the unfused graph and quantizing fails
                require_onnx(f"needed once to fuse and quantize {model_dir.name}/onnx/model.onnx")
                step(_STEPS["shipped"][0])
                _fuse(shipped, result, model_dir)
            else:
                step(_STEPS["torch"][0])
                exported = Path(tmp) / "model-exported.onnx"
                export_with_torch(model_dir, exported)
                step(_STEPS["torch"][1])
                _fuse(exported, result, model_dir)
            if quantization == "int8":
                step("quantizing to int8")
                quantized = Path(tmp) / "model-int8.onnx"
                quantize_int8(result, quantized)
                result = quantized
        os.replace(result, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def export_with_torch(model_dir: Path, out: Path) -> None:
    """The torch route: ``torch.onnx.export`` of the model directory's transformer to ``out`` (fp32, unfused).

    :meth:`OnnxEmbedder.prepare` takes it for architectures that :mod:`kvgraph.embed.onnx_build`
    does not build; written to ``MODEL_DIR/onnx/model.onnx`` it makes the directory's shipped
    graph (bench/embed_build.py compares the two routes that way).
    """
    try:
        import torch
        from transformers import AutoModel
    except ImportError as e:
        why = unsupported_reason(model_dir, _read_json(model_dir / "config.json"))
        raise MissingDependencyError(
            f"torch and transformers (needed once to export {model_dir.name} to ONNX"
            + (f": {why}" if why else "")
            + ")",
            "local",
        ) from e
    require_onnx(f"needed once to export {model_dir.name} to ONNX with torch")  # torch.onnx.export writes with it

    # Eager attention exports the plain softmax(QK^T)V pattern that onnxruntime's BERT optimizer
    # fuses into one Attention op; the default SDPA export is left unfused and ~1.5x slower.
    from kvgraph.embed.local import transformers_bars_off

    with transformers_bars_off():
        try:
            model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
        except (TypeError, ValueError):  # architectures without the option
            model = AutoModel.from_pretrained(str(model_dir)).eval()

    class _LastHidden(torch.nn.Module):
        # A plain positional signature: transformers' forward() takes many optional kwargs.
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    # The tracer warns about shape-dependent Python branches in transformers' masking code;
    # tests/embed check the exported graph against sentence-transformers on padded batches.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LastHidden(model),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(out),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={k: {0: "batch", 1: "seq"} for k in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )


def _fuse(src: Path, dst: Path, model_dir: Path) -> None:
    """Fuse LayerNorm/GELU patterns for BERT-like models; a plain copy for anything else."""
    config = _read_json(model_dir / "config.json")
    if config.get("model_type") in ("bert", "roberta", "xlm-roberta", "mpnet"):
        try:
            import_onnxruntime()
            from onnxruntime.transformers import optimizer

            m = optimizer.optimize_model(
                str(src),
                model_type="bert",
                num_heads=int(config.get("num_attention_heads", 12)),
                hidden_size=int(config.get("hidden_size", 384)),
                opt_level=1,
            )
            m.save_model_to_file(str(dst))
            return
        except Exception:  # the fusion is an optimisation only; fall back to the unfused graph
            pass
    dst.write_bytes(src.read_bytes())
