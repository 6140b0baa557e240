"""Fine-tune the knowledge base's embedding model on (query, positive chunk) pairs.

The loss is the multiple-negatives ranking loss (in-batch negatives, as sentence-transformers'
``MultipleNegativesRankingLoss``): for a batch of B pairs, each query must score its own
positive above the B-1 other positives (and above every hard negative in the batch), by
cross-entropy over cosine similarities times ``scale``. Batches never hold two pairs with the
same query or positive, which would be false negatives.

The loop is written here on plain torch rather than through sentence-transformers' trainer,
which would pull in ``datasets`` and ``accelerate``: it is forty lines and keeps the seed,
the progress display and early stopping under our control. Early stopping watches MRR@10 of
the validation pairs (each validation query ranked against every validation positive); the
best weights are kept.

The result is a sentence-transformers model directory: the weights, a model card
(``README.md``) and ``kvgraph_finetune.json`` (base model, data, steps, metrics, the weights'
sha256, which also enters the model's name in kvgraph). Its int8 ONNX file is built into
kvgraph's cache at once (:meth:`kvgraph.embed.onnx.OnnxEmbedder.onnx_path`), and how close its
vectors are to torch's is recorded. The embedder spec ``onnx-int8:DIR`` runs it exactly like the
stock model; ``kvgraph reembed --embedder DIR`` switches a knowledge base to it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kvgraph.errors import InvalidInputError, MissingDependencyError
from kvgraph.finetune.pairs import TrainingPair, normalize_query, pair_stats
from kvgraph.finetune.split import split_pairs

CARD_FILE = "kvgraph_finetune.json"  # the same name kvgraph.embed.onnx reads (FINETUNE_CARD)
MAX_VALIDATION_PAIRS = 500


@dataclass
class EmbedderTrainConfig:
    """How to train. ``max_steps`` caps the run.

    ``eval_every`` 0 evaluates about five times over the run: each evaluation embeds the validation
    pairs, which costs about as much as two training steps.
    """

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    scale: float = 20.0
    max_seq_length: int | None = None
    seed: int = 0
    eval_every: int = 0
    patience: int = 3
    max_steps: int | None = None
    validation_ratio: float = 0.1
    threads: int = 0

    def check(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise InvalidInputError("batch_size must be at least 2: in-batch negatives need a batch")
        if not 0 < self.learning_rate < 1:
            raise InvalidInputError(f"learning rate must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.validation_ratio < 1:
            raise InvalidInputError(f"validation ratio must be in [0, 1), got {self.validation_ratio}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidInputError(f"max_steps must be at least 1, got {self.max_steps}")


@dataclass
class TrainProgress:
    """A snapshot for a progress display."""

    step: int
    total_steps: int
    loss: float
    validation_mrr: float | None
    best_mrr: float | None
    seconds: float


@dataclass
class EmbedderReport:
    """What a run did: where the model is, the data, the steps, the validation metrics before and after."""

    model_dir: str
    spec: str
    base_model: str
    data: dict[str, Any]
    config: dict[str, Any]
    steps: int
    total_steps: int
    best_step: int
    stopped_early: bool
    validation_before: dict[str, float]
    validation_after: dict[str, float]
    seconds: float
    peak_rss_mb: float
    weights_sha256: str = ""
    onnx_agreement: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def base_model_dir(spec: str | os.PathLike[str] | None) -> Path:
    """The model directory behind an embedder spec (``onnx-int8``, ``onnx-int8:DIR``, ``sentence-transformers:X``).

    A directory path is taken as it is.
    """
    from kvgraph.embed.local import default_model_path
    from kvgraph.embed.onnx import resolve_model_dir

    text = str(spec or "").strip()
    if text and Path(text).expanduser().is_dir():
        return Path(text).expanduser()
    kind, _, arg = text.partition(":")
    if kind in ("", "onnx", "onnx-int8", "onnx-fp32", "sentence-transformers"):
        return resolve_model_dir(arg) if arg else Path(default_model_path())
    raise InvalidInputError(
        f"embedder {text!r} cannot be fine-tuned here: give a local sentence-transformers model "
        "(a directory, onnx-int8:DIR or the default onnx-int8)"
    )


def _require_torch() -> Any:
    try:
        import sentence_transformers
        import torch
    except ImportError as e:
        raise MissingDependencyError("torch and sentence-transformers (to fine-tune the embedder)", "local") from e
    return torch, sentence_transformers


def _tokenize(model: Any, texts: list[str]) -> dict[str, Any]:
    # sentence-transformers renamed tokenize() to preprocess(); both take a list of texts.
    fn = getattr(model, "preprocess", None) or model.tokenize
    features: dict[str, Any] = fn(texts)
    return features


def _encode(model: Any, texts: list[str], batch_size: int = 64) -> np.ndarray:
    torch = _require_torch()[0]
    out: list[np.ndarray] = []
    with torch.no_grad():
        for b in range(0, len(texts), batch_size):
            features = _tokenize(model, texts[b : b + batch_size])
            out.append(model(features)["sentence_embedding"].float().cpu().numpy())
    vecs: np.ndarray = np.concatenate(out) if out else np.zeros((0, 1), np.float32)
    norms: np.ndarray = np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    return np.asarray(vecs / norms, dtype=np.float32)


def ranking_metrics(model: Any, pairs: Sequence[TrainingPair]) -> dict[str, float]:
    """hit@1 and MRR@10 of each pair's query ranked against every distinct positive of ``pairs``."""
    if not pairs:
        return {}
    was_training = model.training
    model.eval()
    try:
        positives = list(dict.fromkeys(p.positive for p in pairs))
        index = {text: i for i, text in enumerate(positives)}
        q = _encode(model, [p.query for p in pairs])
        d = _encode(model, positives)
    finally:
        model.train(was_training)
    scores = q @ d.T
    gold = np.array([index[p.positive] for p in pairs])
    gold_scores = scores[np.arange(len(pairs)), gold]
    ranks = (scores > gold_scores[:, None]).sum(axis=1) + 1  # 1 = first
    rr = np.where(ranks <= 10, 1.0 / ranks, 0.0)
    return {"hit@1": float((ranks == 1).mean()), "mrr@10": float(rr.mean()), "candidates": float(len(positives))}


def batches(pairs: Sequence[TrainingPair], batch_size: int, rng: random.Random) -> list[list[TrainingPair]]:
    """The pairs shuffled into batches without two pairs sharing a query or a positive (false negatives).

    A pair that clashes with the batch being filled waits for the next one; the last batch may
    be short, and a batch of one pair (nothing to contrast with) is dropped.
    """
    order = list(pairs)
    rng.shuffle(order)
    out: list[list[TrainingPair]] = []
    waiting: list[TrainingPair] = []
    queue = order
    while queue or waiting:
        batch: list[TrainingPair] = []
        seen_q: set[str] = set()
        seen_p: set[str] = set()
        rest: list[TrainingPair] = []
        for pair in waiting + queue:
            q, p = normalize_query(pair.query), pair.positive
            if len(batch) < batch_size and q not in seen_q and p not in seen_p:
                batch.append(pair)
                seen_q.add(q)
                seen_p.add(p)
            else:
                rest.append(pair)
        if len(batch) < 2:
            break
        out.append(batch)
        waiting, queue = rest, []
    return out


def _loss(model: Any, batch: list[TrainingPair], scale: float) -> Any:
    torch = _require_torch()[0]
    queries = model(_tokenize(model, [p.query for p in batch]))["sentence_embedding"]
    positives = [p.positive for p in batch]
    # A negative that is another pair's positive (or repeats) would be a false negative for that pair.
    negatives = list(dict.fromkeys(p.negative for p in batch if p.negative and p.negative not in set(positives)))
    docs_text = positives + negatives
    docs = model(_tokenize(model, docs_text))["sentence_embedding"]
    queries = torch.nn.functional.normalize(queries, dim=-1)
    docs = torch.nn.functional.normalize(docs, dim=-1)
    scores = queries @ docs.T * scale
    labels = torch.arange(len(batch), device=scores.device)
    return torch.nn.functional.cross_entropy(scores, labels)


LAYOUT_FILES = ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json")


def _keep_base_layout(base: Path, out: Path, max_seq_length: int) -> None:
    """Write the module files in the base model's format, with its window.

    Newer sentence-transformers save them in a format that older versions, and kvgraph's ONNX
    embedder (which reads ``max_seq_length`` and the pooling mode from them), do not read: the
    window would fall back to 512 tokens. Training changes weights only, so the base's module
    files describe the new model too.
    """
    if not all((base / name).is_file() for name in LAYOUT_FILES):
        return
    for name in LAYOUT_FILES:
        data = json.loads((base / name).read_text(encoding="utf-8"))
        if name == "sentence_bert_config.json":
            data["max_seq_length"] = max_seq_length
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _weights_sha256(model_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.safetensors", "pytorch_model.bin"):
        p = model_dir / name
        if p.is_file():
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def finetune_embedder(
    pairs: Sequence[TrainingPair],
    out_dir: str | os.PathLike[str],
    base_model: str | os.PathLike[str] | None = None,
    config: EmbedderTrainConfig | None = None,
    validation: Sequence[TrainingPair] | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    overwrite: bool = False,
    export: bool = True,
) -> EmbedderReport:
    """Fine-tune ``base_model`` (default all-MiniLM-L6-v2) on ``pairs`` and save it in ``out_dir``.

    ``validation`` (default: ``validation_ratio`` of the pairs, split by document) drives early
    stopping. The directory appears whole or not at all (it is written beside and renamed);
    ``overwrite`` replaces an existing one. ``export`` builds kvgraph's int8 ONNX file of the new
    model and records how close its vectors are to torch's.
    """
    cfg = config or EmbedderTrainConfig()
    cfg.check()
    target = Path(out_dir)
    if target.exists() and not overwrite:
        raise InvalidInputError(f"{target} already exists; choose another directory or overwrite it")
    usable = [p for p in pairs if p.query.strip() and p.positive.strip()]
    if len(usable) < 2:
        raise InvalidInputError(f"need at least 2 pairs with a query and a positive to train, got {len(usable)}")
    if validation is None and cfg.validation_ratio > 0:
        split = split_pairs(usable, test_ratio=cfg.validation_ratio, by="document", seed=cfg.seed)
        if len(split.train) < 2 or not split.test:  # too few documents to hold some out: hold out questions
            split = split_pairs(usable, test_ratio=cfg.validation_ratio, by="shuffle", seed=cfg.seed)
        train, validation = split.train, split.test
        if len(train) < 2:
            train, validation = usable, []
    else:
        train = usable
    validation = [p for p in (validation or []) if p.query.strip() and p.positive.strip()][:MAX_VALIDATION_PAIRS]

    torch, st = _require_torch()
    base = base_model_dir(base_model)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = st.SentenceTransformer(str(base), device="cpu")
    if cfg.max_seq_length:
        model.max_seq_length = cfg.max_seq_length

    rng = random.Random(cfg.seed)
    per_epoch = len(batches(train, cfg.batch_size, random.Random(cfg.seed)))
    total = per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    if total < 1:
        raise InvalidInputError("no training batch could be formed: the pairs share their queries or positives")
    eval_every = cfg.eval_every or max(1, math.ceil(total / 5))
    warmup = int(cfg.warmup_ratio * total)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:  # linear warm-up, then linear decay to zero
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    t0 = time.perf_counter()
    before = ranking_metrics(model, validation)
    best_mrr = before.get("mrr@10")
    best_state: dict[str, Any] | None = None
    best_step = 0
    bad_evals = 0
    history: list[dict[str, float]] = []
    step = 0
    stopped = False
    model.train()
    running = 0.0
    for _epoch in range(cfg.epochs):
        for batch in batches(train, cfg.batch_size, rng):
            if step >= total:
                break
            loss = _loss(model, batch, cfg.scale)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            value = float(loss.item())
            running = value if step == 1 else 0.9 * running + 0.1 * value
            mrr: float | None = None
            if validation and (step % eval_every == 0 or step == total):
                mrr = ranking_metrics(model, validation)["mrr@10"]
                history.append({"step": step, "loss": round(running, 4), "mrr@10": round(mrr, 4)})
                if best_mrr is None or mrr > best_mrr:
                    best_mrr, best_step, bad_evals = mrr, step, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad_evals += 1
                    stopped = bad_evals >= cfg.patience
            elif not validation:
                best_step = step
            if progress is not None:
                progress(TrainProgress(step, total, running, mrr, best_mrr, time.perf_counter() - t0))
            if stopped:
                break
        if stopped or step >= total:
            break
    if validation:
        if best_state is not None:
            model.load_state_dict(best_state)
        else:  # no evaluation beat the untrained model: keep it (the card says so)
            model = st.SentenceTransformer(str(base), device="cpu")
            if cfg.max_seq_length:
                model.max_seq_length = cfg.max_seq_length
    after = ranking_metrics(model, validation)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(str(tmp), create_model_card=False)
    _keep_base_layout(base, tmp, int(model.max_seq_length))
    report = EmbedderReport(
        model_dir=str(target.resolve()),
        spec=f"onnx-int8:{target.resolve()}",
        base_model=str(base),
        data={"train": pair_stats(train), "validation": pair_stats(validation)},
        config=asdict(cfg),
        steps=step,
        total_steps=total,
        best_step=best_step,
        stopped_early=stopped,
        validation_before={k: round(v, 4) for k, v in before.items()},
        validation_after={k: round(v, 4) for k, v in after.items()},
        seconds=round(seconds, 1),
        peak_rss_mb=round(peak, 1),
        weights_sha256=_weights_sha256(tmp),
        history=history,
    )
    try:
        _write_card(tmp, report, target.name)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if export:
        report.onnx_agreement = onnx_agreement(model, target, [p.query for p in validation[:32] or train[:32]])
        _write_card(target, report, target.name)
    return report


def onnx_agreement(model: Any, model_dir: Path, texts: list[str]) -> dict[str, float]:
    """Cosine between torch's vectors and kvgraph's int8 ONNX vectors of ``texts`` (builds the int8 file)."""
    from kvgraph.embed.onnx import OnnxEmbedder

    onnx = OnnxEmbedder(model_dir, quantization="int8", threads=1)
    model.eval()
    a = _encode(model, texts)
    b = onnx.embed(texts)
    cos = (a * b).sum(axis=1)
    return {
        "texts": float(len(texts)),
        "mean_cosine": round(float(cos.mean()), 4),
        "min_cosine": round(float(cos.min()), 4),
    }


def _write_card(model_dir: Path, report: EmbedderReport, name: str) -> None:
    """``kvgraph_finetune.json`` (machine-readable) and ``README.md`` (the model card)."""
    (model_dir / CARD_FILE).write_text(json.dumps(report.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
    train = report.data["train"]
    val = report.data["validation"]
    sources = ", ".join(f"{k} {v}" for k, v in train["by_source"].items()) or "-"
    b, a = report.validation_before, report.validation_after
    lines = [
        f"# {name}: a fine-tuned sentence embedding model",
        "",
        f"Fine-tuned by `kvgraph finetune embedder` from `{report.base_model}`.",
        "",
        "| | |",
        "| --- | --- |",
        f"| base model | `{report.base_model}` |",
        f"| training pairs | {train['pairs']} ({sources}) from {train['documents']} documents |",
        f"| validation pairs | {val['pairs']} from {val['documents']} documents |",
        "| loss | multiple-negatives ranking (in-batch negatives"
        + (", hard negatives" if train["with_negative"] else "")
        + f", scale {report.config['scale']}) |",
        f"| steps | {report.steps} of {report.total_steps} (batch {report.config['batch_size']}, "
        f"lr {report.config['learning_rate']}, seed {report.config['seed']}); best at step {report.best_step}"
        + (", stopped early" if report.stopped_early else "")
        + " |",
        f"| validation hit@1 | {b.get('hit@1', float('nan')):.4f} -> {a.get('hit@1', float('nan')):.4f} |",
        f"| validation MRR@10 | {b.get('mrr@10', float('nan')):.4f} -> {a.get('mrr@10', float('nan')):.4f} |",
        f"| training time | {report.seconds:.1f} s, peak RSS {report.peak_rss_mb:.0f} MB |",
        f"| weights sha256 | `{report.weights_sha256}` |",
    ]
    if report.onnx_agreement:
        agreement = report.onnx_agreement
        lines.append(f"| ONNX int8 vs torch | cosine mean {agreement['mean_cosine']}, min {agreement['min_cosine']} |")
    lines += [
        "",
        "Use it in a knowledge base (re-embeds every chunk, switches atomically):",
        "",
        "```",
        f"kvgraph reembed --embedder {report.model_dir}",
        "```",
        "",
        f"or as the embedder spec `onnx-int8:{report.model_dir}`.",
        "",
    ]
    (model_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")
