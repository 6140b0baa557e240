"""Sentence-transformers models run through onnxruntime: the default embedder.

Why ONNX: on this class of machine all-MiniLM-L6-v2 runs ~2x faster through onnxruntime
with int8 weights than through torch (see bench/README.md, "Embedding"), and importing
onnxruntime costs ~0.1 s against ~4 s for sentence-transformers, which keeps `kvgraph ask`
fast from a cold start. Retrieval quality is measured in the same benchmark.

The ONNX file is made once per model from the model directory (torch is needed for that
one export) and cached under ``$KVGRAPH_CACHE_DIR`` (default ``~/.cache/kvgraph``). A model
directory that already ships ``onnx/model.onnx`` needs no torch at all.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.embed.tokens import HFTokenCounter
from kvgraph.errors import InvalidInputError, MissingDependencyError

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
QUANTIZATIONS = ("int8", "fp32")
# Bumped whenever the exported graph changes its numbers, so that model names (and with them
# the embedding cache and a knowledge base's model check) never mix vectors of two exports.
# v2: eager attention export, so onnxruntime fuses attention and int8 covers Q/K/V too.
EXPORT_VERSION = 2


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
        """Where this model's ONNX file is; made (exported, quantized) on first call."""
        shipped = self.model_dir / "onnx" / "model.onnx"
        if shipped.is_file() and self.quantization == "fp32":
            return shipped
        target = (
            cache_dir()
            / "models"
            / f"{self.model_name.split('@')[0]}-{self._fingerprint()}-v{EXPORT_VERSION}"
            / f"model-{self.quantization}.onnx"
        )
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # One process exports; others wait on the lock and then find the file.
        with open(target.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.is_file():
                _build_onnx(self.model_dir, shipped if shipped.is_file() else None, target, self.quantization)
        return target

    def _fingerprint(self) -> str:
        """Changes when the weights change, so a cached export is never stale."""
        h = hashlib.sha256()
        for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
            p = self.model_dir / name
            if p.is_file():
                st = p.stat()
                h.update(f"{name}:{st.st_size}".encode())
                with open(p, "rb") as f:
                    h.update(f.read(1 << 20))
        return h.hexdigest()[:12]

    def _load(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

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

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a list of texts, got a single string")
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        session = self._load()
        tok = self._tok()
        # Batches of similar length waste little time on padding.
        order = sorted(range(n), key=lambda i: len(texts[i]))
        batches = [order[b : b + self.batch_size] for b in range(0, n, self.batch_size)]

        def run(idx: list[int]) -> None:
            enc = tok.encode_batch([texts[i] for i in idx])
            ids = np.asarray([e.ids for e in enc], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, feeds)[0]  # releases the GIL; one session serves all threads
            if self.pooling == "cls":
                vecs = hidden[:, 0, :]
            else:
                m = mask[..., None].astype(np.float32)
                vecs = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out[idx] = vecs / np.maximum(norms, 1e-12)

        if self.threads <= 1 or len(batches) == 1:
            for idx in batches:
                run(idx)
        else:
            # Longest first, so the last batches to finish are the short ones.
            list(self._executor().map(run, reversed(batches)))
        return out

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="kvgraph-embed")
        return self._pool


def _build_onnx(model_dir: Path, shipped: Path | None, target: Path, quantization: str) -> None:
    """Export the transformer to ONNX (torch, once), fuse, and quantize to int8 if asked."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fp32 = shipped or Path(tmp) / "model-fp32.onnx"
        if shipped is None:
            _export_with_torch(model_dir, fp32)
        fused = Path(tmp) / "model-fused.onnx"
        _fuse(fp32, fused, model_dir)
        result = fused
        if quantization == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "run pre-processing"

            result = Path(tmp) / "model-int8.onnx"
            # Per-channel int8 weights of the MatMuls and the fused attention's Q/K/V projection:
            # ~2x torch's throughput, mean cosine to torch 0.994, SQuAD retrieval unchanged
            # (bench/README.md, "Embedding").
            quantize_dynamic(
                str(fused),
                str(result),
                per_channel=True,
                op_types_to_quantize=["MatMul", "Attention"],
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": 1},  # FLOAT, for outputs of fused ops
            )
        os.replace(result, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _export_with_torch(model_dir: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModel
    except ImportError as e:
        raise MissingDependencyError(
            "torch and transformers (needed once to export the embedding model to ONNX)", "local"
        ) from e

    # Eager attention exports the plain softmax(QK^T)V pattern that onnxruntime's BERT optimizer
    # fuses into one Attention op; the default SDPA export is left unfused and ~1.5x slower.
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
