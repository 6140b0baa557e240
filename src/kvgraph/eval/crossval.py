"""Held-out figures for tuned retrievers: k-fold cross-validation with nested selection, and paired bootstrap.

A setting chosen on the questions it is scored on looks better than it is. The protocol here
scores every question exactly once, when it is *held out*:

1. :func:`make_folds` splits the question indices into ``k`` seeded folds.
2. :func:`cross_validate` takes per-question scores of every configuration of a grid
   (``metrics[name]`` is a ``(configs, questions)`` array) and, for each fold, picks the
   configuration with the best mean objective on the *other* folds (ties: the first in grid
   order), then records that configuration's scores on the held-out fold. The pooled held-out
   scores (one per question) are the cross-validated figure; :attr:`CrossValidation.in_sample`
   gives the optimistic best-of-grid figure to print beside it.
3. :func:`paired_bootstrap` compares two retrievers question by question: the mean difference,
   a percentile bootstrap interval over questions, and how many questions got better or worse.

Everything is plain numpy on arrays the caller computed; nothing here runs a retriever.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kvgraph.errors import InvalidInputError

__all__ = [
    "CrossValidation",
    "FoldChoice",
    "PairedDifference",
    "cross_validate",
    "make_folds",
    "paired_bootstrap",
    "repeated_cross_validation",
]


def make_folds(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """``k`` disjoint, sorted index arrays covering ``range(n)``, from a seeded permutation (sizes differ by <= 1)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise InvalidInputError(f"folds must be an integer >= 2, got {k!r}")
    if n < k:
        raise InvalidInputError(f"cannot split {n} questions into {k} folds")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(f) for f in np.array_split(perm, k)]


@dataclass
class FoldChoice:
    """What one fold chose: the configuration with the best training objective, and how it did held out."""

    fold: int
    n_test: int
    config: str
    index: int
    train_objective: float  # mean objective over the training questions
    tied_configs: int  # configurations within floating-point noise of the best on training
    test_means: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "n_test": self.n_test,
            "config": self.config,
            "train_objective": round(self.train_objective, 6),
            "tied_configs_on_train": self.tied_configs,
            "test_means": {k: round(v, 6) for k, v in self.test_means.items()},
        }


@dataclass
class CrossValidation:
    """Pooled held-out scores per metric (one per question), the per-fold choices, and the in-sample best."""

    names: list[str]
    held_out: dict[str, np.ndarray]
    choices: list[FoldChoice]
    in_sample_index: int
    in_sample: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def in_sample_config(self) -> str:
        """The configuration with the best objective on *all* questions (optimistic: chosen on the test data)."""
        return self.names[self.in_sample_index]

    def held_out_means(self) -> dict[str, float]:
        return {m: float(v.mean()) for m, v in self.held_out.items()}

    def in_sample_means(self) -> dict[str, float]:
        return {m: float(v.mean()) for m, v in self.in_sample.items()}

    def stable(self) -> bool:
        """True when every fold chose the same configuration."""
        return len({c.index for c in self.choices}) == 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "held_out_means": {k: round(v, 6) for k, v in self.held_out_means().items()},
            "in_sample_best": {
                "config": self.in_sample_config,
                "means": {k: round(v, 6) for k, v in self.in_sample_means().items()},
            },
            "chosen_per_fold": [c.to_dict() for c in self.choices],
            "same_choice_on_every_fold": self.stable(),
        }


def _check_metrics(metrics: Mapping[str, np.ndarray], names: Sequence[str]) -> tuple[int, int]:
    if not metrics:
        raise InvalidInputError("cross-validation needs at least one metric")
    shapes = {np.asarray(a).shape for a in metrics.values()}
    if len(shapes) != 1:
        raise InvalidInputError(f"every metric needs the same (configs, questions) shape, got {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise InvalidInputError(f"metric arrays must be (configs, questions) and non-empty, got shape {shape}")
    if len(names) != shape[0]:
        raise InvalidInputError(f"{len(names)} configuration names for {shape[0]} configurations")
    return int(shape[0]), int(shape[1])


def cross_validate(
    metrics: Mapping[str, np.ndarray],
    names: Sequence[str],
    folds: Sequence[np.ndarray],
    objective: Sequence[str] | None = None,
) -> CrossValidation:
    """Nested selection over a grid: per fold, the config with the best mean objective on the other folds.

    ``metrics`` maps a metric name to a ``(configs, questions)`` array of per-question scores;
    ``objective`` names the metrics summed into the selection objective (default: all of them).
    Returns every metric's pooled held-out scores, each fold's choice and the in-sample best.
    """
    _, n = _check_metrics(metrics, names)
    arrays = {m: np.asarray(a, dtype=np.float64) for m, a in metrics.items()}
    keys = list(objective) if objective is not None else list(arrays)
    unknown = [m for m in keys if m not in arrays]
    if unknown or not keys:
        raise InvalidInputError(f"objective metric(s) {unknown or keys} not among {', '.join(arrays)}")
    covered = np.sort(np.concatenate([np.asarray(f, dtype=np.int64) for f in folds])) if folds else np.array([])
    if covered.size != n or not np.array_equal(covered, np.arange(n)):
        raise InvalidInputError(f"the folds must partition the {n} questions exactly once")
    target = np.sum([arrays[m] for m in keys], axis=0)
    held = {m: np.full(n, np.nan) for m in arrays}
    choices: list[FoldChoice] = []
    for f, test in enumerate(folds):
        test = np.asarray(test, dtype=np.int64)
        train = np.setdiff1d(np.arange(n), test)
        if train.size == 0:
            raise InvalidInputError("a fold leaves no questions to train on")
        train_means = target[:, train].mean(axis=1)
        best = int(np.argmax(train_means))  # argmax returns the first maximum: ties go to grid order
        for m, a in arrays.items():
            held[m][test] = a[best, test]
        choices.append(
            FoldChoice(
                fold=f,
                n_test=int(test.size),
                config=str(names[best]),
                index=best,
                train_objective=float(train_means[best]),
                tied_configs=int(np.sum(np.isclose(train_means, train_means[best]))),
                test_means={m: float(a[best, test].mean()) for m, a in arrays.items()},
            )
        )
    in_best = int(np.argmax(target.mean(axis=1)))
    return CrossValidation(
        names=[str(x) for x in names],
        held_out=held,
        choices=choices,
        in_sample_index=in_best,
        in_sample={m: a[in_best].copy() for m, a in arrays.items()},
    )


def repeated_cross_validation(
    metrics: Mapping[str, np.ndarray],
    names: Sequence[str],
    k: int,
    seeds: Sequence[int],
    objective: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """The pooled held-out mean of each metric over several fold splits: mean, min and max across ``seeds``."""
    _, n = _check_metrics(metrics, names)
    runs = [cross_validate(metrics, names, make_folds(n, k, s), objective).held_out_means() for s in seeds]
    return {
        m: {
            "mean": float(np.mean([r[m] for r in runs])),
            "min": float(min(r[m] for r in runs)),
            "max": float(max(r[m] for r in runs)),
        }
        for m in metrics
    }


@dataclass
class PairedDifference:
    """``a - b`` per question, scaled: mean, percentile bootstrap interval, questions better / worse / equal."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_boot_le_0: float  # share of bootstrap means <= 0: small when a is reliably better
    better: int
    worse: int
    equal: int
    confidence: float = 0.95

    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_diff": round(self.mean_diff, 2),
            "ci95" if self.confidence == 0.95 else f"ci{round(100 * self.confidence)}": [
                round(self.ci_low, 2),
                round(self.ci_high, 2),
            ],
            "p_boot_le_0": round(self.p_boot_le_0, 4),
            "better": self.better,
            "worse": self.worse,
            "equal": self.equal,
        }

    def format(self, digits: int = 1) -> str:
        """``+8.0 [+3.0, +13.0] 21/6``: mean, interval, questions better/worse."""
        d = digits
        return f"{self.mean_diff:+.{d}f} [{self.ci_low:+.{d}f}, {self.ci_high:+.{d}f}] {self.better}/{self.worse}"


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    seed: int | np.random.Generator = 0,
    resamples: int = 2000,
    scale: float = 100.0,
    confidence: float = 0.95,
) -> PairedDifference:
    """Compare two retrievers' per-question scores (same questions, same order) by a paired bootstrap.

    The differences ``scale * (a - b)`` are resampled with replacement ``resamples`` times; the
    interval is the percentile interval of the resampled means. ``scale=100`` reports recall
    points. ``seed`` is an int or a numpy ``Generator`` (shared generators keep a report reproducible).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise InvalidInputError(f"paired scores need two equal, non-empty 1-d arrays, got {a.shape} and {b.shape}")
    if not 0 < confidence < 1:
        raise InvalidInputError(f"confidence must be between 0 and 1, got {confidence!r}")
    if resamples < 1:
        raise InvalidInputError(f"resamples must be >= 1, got {resamples!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    d = scale * (a - b)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    boot = d[idx].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return PairedDifference(
        mean_diff=float(d.mean()),
        ci_low=float(lo),
        ci_high=float(hi),
        p_boot_le_0=float(np.mean(boot <= 0)),
        better=int(np.sum(d > 0)),
        worse=int(np.sum(d < 0)),
        equal=int(np.sum(d == 0)),
        confidence=confidence,
    )
