"""LLM-as-judge answer metrics: correctness (1-5), faithfulness (0/1) and relevancy (0/1).

Each metric sends one short prompt asking for a brief reasoning followed by a tagged score
(``<score>4</score>``) and parses the reply robustly: tags, ``Score: 4/5``, bold markdown, a bare
number or YES/NO, trailing chatter. Small local models often ignore the format, so an unparsable
reply is answered with a short corrective follow-up, up to ``retries`` times; if the reply is still
unparsable the result's score is NaN and ``raw`` keeps the text. Format problems never raise;
transport errors of the LLM (:class:`~kvgraph.llm.LLMError`) do.

Degenerate inputs are scored without calling the LLM: an empty answer gets the minimum score of
every metric, and an empty retrieval (no non-blank context) scores 0 for faithfulness and
relevancy instead of raising.

:func:`judge_many` runs judge calls concurrently and returns the results in input order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from kvgraph.llm.base import LLM, ChatMessage

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_RETRIES = 2
"""Corrective follow-ups sent after an unparsable reply before giving up with NaN."""

# -- prompts ------------------------------------------------------------------------------

CORRECTNESS_SYSTEM = """\
You grade answers to questions against a reference answer.
Score the answer from 1 to 5:
5 = fully correct and complete, agrees with the reference
4 = correct with minor omissions or imprecision
3 = partly correct, or correct but missing important parts
2 = mostly incorrect, with some relevant content
1 = incorrect, irrelevant, or no answer
Judge only meaning, not wording or style. First write one or two sentences of reasoning, \
then the score on its own line as <score>N</score>."""

CORRECTNESS_USER = """\
Question: {question}

Reference answer: {reference}

Answer to grade: {answer}"""

FAITHFULNESS_SYSTEM = """\
You check whether an answer is supported by context passages.
Reply <score>1</score> if every claim in the answer is stated in or directly follows from the passages, \
and <score>0</score> if any claim is missing from or contradicted by them. Ignore whether the answer is correct \
in general: only support by the passages counts. First write one or two sentences of reasoning, then the score \
on its own line."""

FAITHFULNESS_USER = """\
Context passages:

{contexts}

Answer to check: {answer}"""

RELEVANCY_SYSTEM = """\
You check whether an answer and the context passages it was made from are relevant to a question.
Reply <score>1</score> if the answer addresses the question and the passages relate to it, \
and <score>0</score> otherwise. First write one or two sentences of reasoning, then the score on its own line."""

RELEVANCY_USER = """\
Question: {question}

Context passages:

{contexts}

Answer: {answer}"""

CORRECTIVE_SCALE = "Reply with only the score as <score>N</score>, where N is a whole number from 1 to 5."
CORRECTIVE_BINARY = "Reply with only the score as <score>1</score> (yes) or <score>0</score> (no)."


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """One judgement: ``score`` (NaN when no reply could be parsed), the judge's ``reasoning``,
    the ``raw`` text of its last reply and the number of LLM calls made (``attempts``, 0 for the
    shortcuts that need no LLM)."""

    score: float
    reasoning: str
    raw: str
    attempts: int = 1

    @property
    def parsed(self) -> bool:
        """Whether a score was obtained (False when the judge's output stayed unparsable)."""
        return not math.isnan(self.score)


# -- metrics ------------------------------------------------------------------------------


def correctness(llm: LLM, question: str, answer: str, reference: str, *, retries: int = DEFAULT_RETRIES) -> JudgeResult:
    """Grade ``answer`` to ``question`` against ``reference`` from 1 (wrong) to 5 (fully correct).

    An empty answer scores 1.0 without calling the LLM.
    """
    if not answer.strip():
        return JudgeResult(1.0, "the answer is empty", "", attempts=0)
    user = CORRECTNESS_USER.format(question=question.strip(), reference=reference.strip(), answer=answer.strip())
    return _judge(llm, CORRECTNESS_SYSTEM, user, scale=(1.0, 5.0), retries=retries)


def faithfulness(llm: LLM, answer: str, contexts: Sequence[str], *, retries: int = DEFAULT_RETRIES) -> JudgeResult:
    """1.0 when every claim of ``answer`` is supported by ``contexts``, else 0.0.

    An empty retrieval (no non-blank context) or an empty answer scores 0.0 without calling the LLM.
    """
    passages = _passages(contexts)
    if not passages:
        return JudgeResult(0.0, "no context was retrieved", "", attempts=0)
    if not answer.strip():
        return JudgeResult(0.0, "the answer is empty", "", attempts=0)
    user = FAITHFULNESS_USER.format(contexts=passages, answer=answer.strip())
    return _judge(llm, FAITHFULNESS_SYSTEM, user, scale=(0.0, 1.0), retries=retries)


def relevancy(
    llm: LLM, question: str, answer: str, contexts: Sequence[str], *, retries: int = DEFAULT_RETRIES
) -> JudgeResult:
    """1.0 when ``answer`` and ``contexts`` are relevant to ``question``, else 0.0.

    An empty retrieval or an empty answer scores 0.0 without calling the LLM.
    """
    passages = _passages(contexts)
    if not passages:
        return JudgeResult(0.0, "no context was retrieved", "", attempts=0)
    if not answer.strip():
        return JudgeResult(0.0, "the answer is empty", "", attempts=0)
    user = RELEVANCY_USER.format(question=question.strip(), contexts=passages, answer=answer.strip())
    return _judge(llm, RELEVANCY_SYSTEM, user, scale=(0.0, 1.0), retries=retries)


def judge_many(
    fn: Callable[[T], R],
    items: Iterable[T],
    concurrency: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> list[R]:
    """``[fn(item) for item in items]``, run on ``concurrency`` threads; results keep the input order.

    ``progress(done, total)`` is called after each item finishes (from the calling thread). The
    first exception raised by ``fn`` cancels the items not yet started and is re-raised.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    work = list(items)
    total = len(work)
    if concurrency == 1 or total <= 1:
        # No threads for the trivial cases: simpler tracebacks and no pool start-up.
        results: list[R] = []
        for item in work:
            results.append(fn(item))
            if progress is not None:
                progress(len(results), total)
        return results
    with ThreadPoolExecutor(min(concurrency, total), thread_name_prefix="kvgraph-judge") as pool:
        futures = [pool.submit(fn, item) for item in work]
        pending: set[Future[R]] = set(futures)
        done_count = 0
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # raises the item's exception, if any
                done_count += len(done)
                if progress is not None:
                    progress(done_count, total)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        return [f.result() for f in futures]


# -- the judging loop ---------------------------------------------------------------------


def _judge(llm: LLM, system: str, user: str, *, scale: tuple[float, float], retries: int) -> JudgeResult:
    binary = scale == (0.0, 1.0)
    messages = [ChatMessage("system", system), ChatMessage("user", user)]
    raw = first = ""
    for attempt in range(1, max(retries, 0) + 2):
        raw = llm.complete(messages, temperature=0.0)
        first = first or raw
        found = parse_score(raw, scale, binary=binary)
        if found is not None:
            score, span = found
            # A reply to the correction is usually the bare score: the reasoning is in the first one.
            reasoning = _reasoning(raw, span) or _reasoning(first, None)
            return JudgeResult(score, reasoning, raw, attempts=attempt)
        # Keep the model's own reply in the conversation so the correction reads naturally and
        # the model can restate its verdict instead of judging again from scratch.
        messages += [
            ChatMessage("assistant", raw),
            ChatMessage("user", CORRECTIVE_BINARY if binary else CORRECTIVE_SCALE),
        ]
    return JudgeResult(math.nan, _reasoning(raw, None), raw, attempts=max(retries, 0) + 1)


def _passages(contexts: Sequence[str]) -> str:
    texts = [c.strip() for c in contexts if c and c.strip()]
    return "\n\n".join(f"[{i}] {text}" for i, text in enumerate(texts, 1))


# -- parsing ------------------------------------------------------------------------------

_NUMBER = r"[-+]?\d+(?:[.,]\d+)?"
# "<score>4</score>", "<score> **4/5** </score>", "<Score>YES</Score>"; an unclosed tag at the end too.
_TAG = re.compile(r"<\s*score\s*>(.*?)(?:<\s*/\s*score\s*>|$)", re.IGNORECASE | re.DOTALL)
# A number, optionally out of a denominator: "4", "4.5", "4/5", "4 out of 5", "8/10".
_FRACTION = re.compile(rf"({_NUMBER})(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?", re.IGNORECASE)
# "Score: 4", "**Score:** 4/5", "Final score = 4.5", "Rating - 3", "score of 4", "Verdict: YES".
_LABEL = re.compile(
    r"\b(?:final\s+)?(?:score|rating|grade|verdict|judgement|judgment)\b[\s*_`]*(?:is|of|[:=\-])?[\s*_`]*"
    rf"({_NUMBER}(?:\s*(?:/|out\s+of)\s*\d+(?:\.\d+)?)?|yes|no|true|false|pass|fail)\b",
    re.IGNORECASE,
)
_VERDICTS = {"yes": 1.0, "true": 1.0, "pass": 1.0, "no": 0.0, "false": 0.0, "fail": 0.0}
_LAST_LINE = re.compile(r"([^\n]*\S[^\n]*)\s*\Z")
# A leading verdict word must be followed by punctuation or the end: "No, X is unsupported" is a
# verdict, "No idea" and "Yes and no" are not.
_VERDICT_WORD = re.compile(
    r"^[\s*_`\"'(\[]*(yes|no|true|false|pass|fail)\b(?=[*_`\"')\]]*\s*(?:[,.!:;\-\u2013\u2014]|\Z))", re.IGNORECASE
)
# Decoration around a bare value: markdown emphasis, quotes, brackets, trailing punctuation.
_DECOR = " \t*_`\"'()[]{}.,;:!"


def parse_score(text: str, scale: tuple[float, float], *, binary: bool = False) -> tuple[float, tuple[int, int]] | None:
    """The score in a judge's reply and the span of ``text`` it was read from, or None if there is none.

    Tried in order, the first that yields a valid value wins: the last ``<score>`` tag; the last
    labelled score (``Score: 4/5``, ``**Rating:** 3``); the last non-empty line when it is a bare
    value (``4.5``, ``**4**``, ``YES.``); with ``binary``, a reply that starts with YES or NO.
    With ``binary``, YES/NO/TRUE/FALSE count as 1/0 and only 0 and 1 are valid. A fraction with
    another denominator is rescaled (``8/10`` on a 1-5 scale is 4). Values outside ``scale`` are
    rejected: they mean the model misread the instructions, and a retry is the better answer.
    """
    # Last match first: models often restate the format ("<score>N</score>") before answering.
    for pattern in (_TAG, _LABEL):
        for match in reversed(list(pattern.finditer(text))):
            value = _value(match.group(1), scale, binary=binary)
            if value is not None:
                return value, match.span()
    last_line = _LAST_LINE.search(text)
    if last_line:
        value = _value(last_line.group(1), scale, binary=binary, whole=True)
        if value is not None:
            return value, last_line.span(1)
    if binary:
        word = _VERDICT_WORD.match(text)
        if word:
            return _VERDICTS[word.group(1).lower()], (0, 0)
    return None


def _value(fragment: str, scale: tuple[float, float], *, binary: bool, whole: bool = False) -> float | None:
    """The score in a fragment (a tag's content, a label's value or a line), or None.

    With ``whole`` the fragment must be nothing but the value and decoration, so that a line of
    reasoning that merely contains a number is not mistaken for a score.
    """
    lo, hi = scale
    stripped = fragment.strip(_DECOR)
    if binary and stripped.lower() in _VERDICTS:
        return _VERDICTS[stripped.lower()]
    match = _FRACTION.fullmatch(stripped) if whole else _FRACTION.search(stripped)
    if match is None:
        if binary and not whole:
            word = _VERDICT_WORD.match(stripped)
            return _VERDICTS[word.group(1).lower()] if word else None
        return None
    try:
        value = float(match.group(1).replace(",", "."))  # "4,5" is a decimal comma
        denominator = float(match.group(2)) if match.group(2) else None
    except ValueError:
        return None
    if denominator is not None and denominator > 0 and denominator != hi:
        value = value / denominator * hi
    if not math.isfinite(value) or not lo <= value <= hi:
        return None
    if binary and value not in (0.0, 1.0):
        return None
    return value


_REASONING_TAG = re.compile(r"<\s*reasoning\s*>(.*?)<\s*/\s*reasoning\s*>", re.IGNORECASE | re.DOTALL)
_SCORE_LINE = re.compile(r"^[\s*_#`]*(?:final\s+)?(?:score|rating|grade|verdict)\b.*$", re.IGNORECASE | re.MULTILINE)


def _reasoning(raw: str, span: tuple[int, int] | None) -> str:
    """The judge's reasoning: a ``<reasoning>`` block if any, else the reply without the score."""
    tagged = _REASONING_TAG.search(raw)
    if tagged:
        return tagged.group(1).strip()
    text = raw if span is None else raw[: span[0]] + raw[span[1] :]
    text = _TAG.sub("", text)
    text = _SCORE_LINE.sub("", text)
    text = re.sub(r"^\s*(?:reasoning|explanation)\s*[:\-]\s*", "", text.strip(), flags=re.IGNORECASE)
    # Cutting the score out can leave its decoration behind ("**", "."): drop lines without words.
    lines = [line for line in text.splitlines() if not line.strip() or re.search(r"\w", line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
