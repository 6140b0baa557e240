"""Base vs fine-tuned: the comparison table and chart of ``kvgraph finetune eval``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ANSWER_KEYS = ("correctness", "semantic_similarity", "token_f1", "faithfulness", "relevancy")
SCALES = {"correctness": 5.0}  # the judge's 1-5; the rest are 0-1


def comparison_rows(means: Mapping[str, Mapping[str, float]], keys: Sequence[str]) -> list[list[str]]:
    """One row per metric: its value for each model, and the last model minus the first."""
    names = list(means)
    rows = []
    for key in keys:
        values = [means[n].get(key, math.nan) for n in names]
        if all(math.isnan(v) for v in values):
            continue
        delta = values[-1] - values[0] if len(values) > 1 else math.nan
        rows.append([key, *(f"{v:.3f}" for v in values), "" if math.isnan(delta) else f"{delta:+.3f}"])
    return rows


def save_comparison(
    means: Mapping[str, Mapping[str, float]],
    rows: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    title: str,
    keys: Sequence[str] = ANSWER_KEYS,
) -> list[Path]:
    """``finetune_eval.json`` (means and per-question rows) and, with matplotlib, ``finetune_eval.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "finetune_eval.json"]
    paths[0].write_text(json.dumps({"title": title, "means": means, "rows": rows}, indent=1, default=str))
    png = _chart(means, keys, out / "finetune_eval.png", title)
    if png is not None:
        paths.append(png)
    return paths


def _chart(means: Mapping[str, Mapping[str, float]], keys: Sequence[str], path: Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    shown = [k for k in keys if any(not math.isnan(m.get(k, math.nan)) for m in means.values())]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(shown) + 2), 4))
    width = 0.8 / max(len(means), 1)
    for i, (name, m) in enumerate(means.items()):
        # Correctness is on 1-5: drawn as a share of 5 so that one axis fits every metric.
        vals = [m.get(k, math.nan) / SCALES.get(k, 1.0) for k in shown]
        xs = [j + i * width - 0.4 + width / 2 for j in range(len(shown))]
        bars = ax.bar(xs, vals, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(shown)), [f"{k} (/5)" if k in SCALES else k for k in shown])
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
