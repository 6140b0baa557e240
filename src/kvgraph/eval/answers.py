"""Answer evaluation: ask every question of a dataset and score the answers.

Always: semantic similarity (embedding cosine with the reference answer), token F1 and
exact match (SQuAD's definitions, best over the reference answers). With an LLM: a
correctness judge (1-5) and faithfulness / relevancy (0/1). An empty answer or an empty
retrieval scores the minimum instead of raising.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kvgraph.eval.answer_metrics import exact_match, semantic_similarity, token_f1
from kvgraph.eval.datasets import EvalDataset


@dataclass
class AnswerRow:
    qid: str
    question: str
    answer: str
    references: list[str]
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class AnswerReport:
    rows: list[AnswerRow]
    means: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"means": self.means, "rows": [r.__dict__ for r in self.rows]}


def evaluate_answers(
    kb: Any, dataset: EvalDataset, llm: Any = None, k: int | None = None, concurrency: int = 4
) -> AnswerReport:
    """Ask each query of ``dataset`` (with references) through ``kb`` and score the answers."""
    queries = [q for q in dataset.queries if q.answers]
    rows: list[AnswerRow] = []
    contexts: list[list[str]] = []
    for q in queries:
        ans = kb.ask(q.text, k=k)
        rows.append(AnswerRow(q.id, q.text, ans.text if ans.citations else "", list(q.answers)))
        contexts.append([h.node.text for h in ans.source_nodes])
    sims = semantic_similarity(kb.embedder, [r.answer for r in rows], [r.references[0] for r in rows])
    for r, sim in zip(rows, sims):
        r.scores["semantic_similarity"] = float(sim)
        r.scores["token_f1"] = token_f1(r.answer, r.references)
        r.scores["exact_match"] = exact_match(r.answer, r.references)
    if llm is not None:
        from kvgraph.eval.judge import correctness, faithfulness, judge_many, relevancy

        items = list(zip(rows, contexts))
        judged = judge_many(
            lambda item: (
                correctness(llm, item[0].question, item[0].answer, item[0].references[0]),
                faithfulness(llm, item[0].answer, item[1]),
                relevancy(llm, item[0].question, item[0].answer, item[1]),
            ),
            items,
            concurrency=concurrency,
        )
        for r, (c, f, rel) in zip(rows, judged):
            r.scores.update(correctness=c.score, faithfulness=f.score, relevancy=rel.score)
    keys = sorted({k for r in rows for k in r.scores})
    means = {}
    for key in keys:
        vals = [r.scores[key] for r in rows if not math.isnan(r.scores.get(key, math.nan))]
        means[key] = sum(vals) / len(vals) if vals else math.nan
    return AnswerReport(rows, means)
