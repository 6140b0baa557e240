"""Fine-tuning the real all-MiniLM-L6-v2 on a few real SQuAD pairs, and running the result through kvgraph."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.errors import InvalidInputError
from kvgraph.finetune.embedder import EmbedderTrainConfig, base_model_dir, batches, finetune_embedder
from kvgraph.finetune.pairs import TrainingPair, normalize_query
from support import require_dataset


def squad_pairs(articles: int = 2) -> list[TrainingPair]:
    from kvgraph.eval.datasets import read_squad

    ds = read_squad(require_dataset("squad", "dev-v1.1.from-explorer.json"), max_articles=articles)
    text = {p.id: (p.full_text, p.title) for p in ds.passages}
    return [
        TrainingPair(q.text, text[q.relevant[0]][0], source="labelled", doc_id=text[q.relevant[0]][1])
        for q in ds.queries
    ]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_batches_never_hold_a_question_or_positive_twice() -> None:
    pairs = [TrainingPair(f"q{i % 7}?", f"p{i % 5}", doc_id="d") for i in range(40)]
    got = batches(pairs, 4, random.Random(0))
    assert got and all(2 <= len(b) <= 4 for b in got)
    for b in got:
        assert len({normalize_query(p.query) for p in b}) == len(b)
        assert len({p.positive for p in b}) == len(b)
    assert batches(pairs, 4, random.Random(0)) == got  # seeded


def test_base_model_dir_follows_embedder_specs(embedder: OnnxEmbedder, tmp_path: Path) -> None:
    stock = embedder.model_dir
    assert base_model_dir(None) == base_model_dir("onnx-int8") == base_model_dir("onnx-fp32") == stock
    assert base_model_dir(f"onnx-int8:{stock}") == stock
    assert base_model_dir(str(tmp_path)) == tmp_path
    with pytest.raises(InvalidInputError, match="cannot be fine-tuned here"):
        base_model_dir("openai:text-embedding-3-small")


def test_bad_runs_are_refused_before_training(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(InvalidInputError, match="already exists"):
        finetune_embedder([TrainingPair("q?", "p")] * 3, tmp_path / "taken")
    with pytest.raises(InvalidInputError, match="at least 2 pairs"):
        finetune_embedder([TrainingPair("q?", "p"), TrainingPair("r?")], tmp_path / "new")
    with pytest.raises(InvalidInputError, match="batch_size must be at least 2"):
        finetune_embedder([TrainingPair("q?", "p")] * 3, tmp_path / "new", config=EmbedderTrainConfig(batch_size=1))


@pytest.mark.slow  # loads torch and sentence-transformers, trains, builds the int8 file: ~30-120 s here
def test_finetune_a_real_model_and_run_it_as_an_embedder(
    tmp_path: Path, embedder: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KVGRAPH_CACHE_DIR", str(tmp_path / "cache"))  # each run's model gets its own ONNX files
    pairs = squad_pairs(2)
    train = [p for p in pairs if p.doc_id == pairs[0].doc_id][:48]
    validation = [p for p in pairs if p.doc_id != pairs[0].doc_id][:24]
    seen: list[int] = []
    config = EmbedderTrainConfig(batch_size=8, max_steps=3, learning_rate=1e-4, seed=3)
    out = tmp_path / "minilm-squad"
    report = finetune_embedder(train, out, validation=[], config=config, progress=lambda p: seen.append(p.step))
    assert seen == [1, 2, 3] and report.steps == 3 and report.total_steps == 3 and report.best_step == 3
    assert report.data["train"]["pairs"] == 48 and report.data["validation"]["pairs"] == 0
    card = json.loads((out / "kvgraph_finetune.json").read_text())
    assert card["weights_sha256"] == report.weights_sha256 == sha256(out / "model.safetensors")
    assert "multiple-negatives ranking" in (out / "README.md").read_text()
    assert not list(tmp_path.glob(".minilm-squad.tmp-*"))
    # kvgraph runs it like the stock model: same tokenizer, window and pooling, a name that carries the weights
    tuned = OnnxEmbedder(out)
    assert tuned.model_name == f"minilm-squad-{report.weights_sha256[:8]}@onnx-int8-v2"
    assert (tuned.dim, tuned.max_length, tuned.pooling) == (384, embedder.max_length, embedder.pooling)
    assert report.onnx_agreement["mean_cosine"] > 0.98  # int8 ONNX vs torch, as for the stock model
    texts = [p.query for p in validation[:5]]
    cos = (tuned.embed(texts) * embedder.embed(texts)).sum(axis=1)
    assert np.all(cos > 0.8) and np.all(cos < 0.9999)  # moved by training, still the same model family
    with pytest.raises(InvalidInputError, match="already exists"):
        finetune_embedder(train, out, config=config)
    # with validation pairs: evaluated at every step, the best weights kept (the base's if none beat it)
    config = EmbedderTrainConfig(batch_size=8, max_steps=2, eval_every=1, learning_rate=1e-4, seed=3)
    again = finetune_embedder(train, out, validation=validation, config=config, overwrite=True, export=False)
    assert [h["step"] for h in again.history] == [1, 2]
    assert again.validation_before["candidates"] == len({p.positive for p in validation})
    best = max([again.validation_before["mrr@10"], *(h["mrr@10"] for h in again.history)])
    assert again.validation_after["mrr@10"] == pytest.approx(best, abs=2e-4)
    cos = (OnnxEmbedder(out).embed(texts) * embedder.embed(texts)).sum(axis=1)
    assert (cos.min() > 0.999999) == (again.best_step == 0)  # the stock weights exactly, or trained ones
