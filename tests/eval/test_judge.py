"""LLM-as-judge metrics against a real loopback OpenAI server with scripted replies."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from kvgraph.eval import judge
from kvgraph.eval.judge import JudgeResult, correctness, faithfulness, judge_many, parse_score, relevancy
from kvgraph.llm import LLMError, OpenAICompatibleLLM
from kvgraph.testing.openai_server import FakeOpenAIServer

Messages = list[dict[str, Any]]


def scripted(*replies: str) -> Callable[[Messages], str]:
    """A reply function answering the given texts in order (the last one repeats)."""
    queue = list(replies)
    lock = threading.Lock()

    def reply(messages: Messages) -> str:
        with lock:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    return reply


def chat_requests(server: FakeOpenAIServer) -> list[Messages]:
    return [r.body["messages"] for r in server.requests_to("/v1/chat/completions")]


# -- parsing through the server --------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("The answer matches the reference.\n<score>4</score>", 4.0),
        ("<score> **5** </score>", 5.0),
        ("<SCORE>3/5</SCORE> because it misses the date.", 3.0),
        ("Reasoning: close.\nScore: 4/5", 4.0),
        ("**Score:** 2", 2.0),
        ("Score: **3**\n\nLet me know if you need more detail!", 3.0),
        ("4.5", 4.5),
        ("The answer is right but terse.\n\n**4**", 4.0),
        ("Final score = 1.", 1.0),
        ("Rating: 8/10", 4.0),
        ("score: 4 out of 5 - good overall", 4.0),
        ("Format: <score>N</score>\nMy verdict: <score>2</score>", 2.0),
        ("The answer is mostly correct. <score>4", 4.0),
        ("I would give it a score of 3, since it is partly right.", 3.0),
    ],
)
def test_correctness_parses_malformed_replies(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM, reply: str, expected: float
) -> None:
    openai_server.reply = scripted(reply)
    result = correctness(llm, "When was the tower built?", "In 1889.", "It was built in 1887-1889.")
    assert result.score == expected
    assert result.raw == reply
    assert result.attempts == 1
    assert result.parsed
    assert len(chat_requests(openai_server)) == 1
    assert "<score>" not in result.reasoning


def test_correctness_prompt_holds_question_answer_and_reference(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM
) -> None:
    openai_server.reply = scripted("Same fact as the reference.\n<score>5</score>")
    result = correctness(llm, "When was it built?", "In 1889.", "1889")
    assert result == JudgeResult(5.0, "Same fact as the reference.", "Same fact as the reference.\n<score>5</score>")
    [messages] = chat_requests(openai_server)
    assert messages[0]["role"] == "system" and "<score>N</score>" in messages[0]["content"]
    user = messages[1]["content"]
    assert "When was it built?" in user and "In 1889." in user and "Reference answer: 1889" in user
    assert openai_server.requests[0].body["temperature"] == 0.0


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Every claim appears in passage [1].\n<score>1</score>", 1.0),
        ("The date is not in the passages. <score>0</score>", 0.0),
        ("<score>YES</score>", 1.0),
        ("Verdict: NO", 0.0),
        ("No, the second claim is unsupported.", 0.0),
        ("All supported.\n\n**Yes.**", 1.0),
        ("Score: 1/1", 1.0),
    ],
)
def test_faithfulness_parses_binary_replies(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM, reply: str, expected: float
) -> None:
    openai_server.reply = scripted(reply)
    result = faithfulness(llm, "Paris is the capital.", ["Paris is the capital of France.", "  "])
    assert result.score == expected
    [messages] = chat_requests(openai_server)
    # Blank contexts are dropped and the rest numbered.
    assert "[1] Paris is the capital of France." in messages[1]["content"]
    assert "[2]" not in messages[1]["content"]


def test_relevancy_scores_and_prompt(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    openai_server.reply = scripted("Both are on topic.\n<score>1</score>")
    result = relevancy(llm, "What is the capital of France?", "Paris.", ["France's capital is Paris.", "Lyon is big."])
    assert result.score == 1.0
    assert result.reasoning == "Both are on topic."
    user = chat_requests(openai_server)[0][1]["content"]
    assert "What is the capital of France?" in user and "[2] Lyon is big." in user and "Paris." in user


# -- retries ----------------------------------------------------------------------------------


def test_unparsable_reply_is_retried_with_a_corrective_message(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM
) -> None:
    openai_server.reply = scripted("I think the answer is pretty good overall.", "<score>4</score>")
    result = correctness(llm, "q?", "a", "ref")
    assert result.score == 4.0
    assert result.attempts == 2
    assert result.raw == "<score>4</score>"
    assert result.reasoning == "I think the answer is pretty good overall."
    requests = chat_requests(openai_server)
    assert len(requests) == 2
    follow_up = requests[1]
    # The retry replays the conversation: the unparsable reply, then the correction.
    assert follow_up[:2] == requests[0]
    assert follow_up[2] == {"role": "assistant", "content": "I think the answer is pretty good overall."}
    assert follow_up[3]["role"] == "user" and "<score>" in follow_up[3]["content"]


def test_out_of_range_score_counts_as_unparsable(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    openai_server.reply = scripted("Score: 7", "Score: 5")
    result = correctness(llm, "q?", "a", "ref")
    assert result.score == 5.0
    assert len(chat_requests(openai_server)) == 2


def test_binary_metric_rejects_fractional_scores(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    openai_server.reply = scripted("<score>0.5</score>", "<score>0</score>")
    result = faithfulness(llm, "a", ["ctx"])
    assert result.score == 0.0
    assert result.attempts == 2
    assert "<score>1</score>" in chat_requests(openai_server)[1][-1]["content"]


def test_nan_after_retries_are_exhausted(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    openai_server.reply = scripted("Hmm, hard to say.")
    result = correctness(llm, "q?", "a", "ref", retries=2)
    assert math.isnan(result.score)
    assert not result.parsed
    assert result.raw == "Hmm, hard to say."
    assert result.reasoning == "Hmm, hard to say."
    assert result.attempts == 3
    assert len(chat_requests(openai_server)) == 3


def test_zero_retries_makes_one_request(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    openai_server.reply = scripted("no idea")
    result = relevancy(llm, "q?", "a", ["ctx"], retries=0)
    assert math.isnan(result.score)
    assert len(chat_requests(openai_server)) == 1


def test_transport_errors_propagate(openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM) -> None:
    openai_server.fail_next(1, status=400)
    with pytest.raises(LLMError):
        correctness(llm, "q?", "a", "ref")


def test_server_errors_propagate_after_http_retries(openai_server: FakeOpenAIServer) -> None:
    client = OpenAICompatibleLLM(openai_server.base_url, "test-model", max_retries=1)
    openai_server.fail_next(2, status=503)
    with client, pytest.raises(LLMError):
        faithfulness(client, "a", ["ctx"])
    assert len(chat_requests(openai_server)) == 2


# -- shortcuts --------------------------------------------------------------------------------


def test_empty_answer_scores_minimum_without_a_request(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM
) -> None:
    result = correctness(llm, "q?", "  \n", "ref")
    assert result.score == 1.0 and result.attempts == 0 and result.raw == ""
    assert faithfulness(llm, "", ["ctx"]).score == 0.0
    assert relevancy(llm, "q?", "", ["ctx"]).score == 0.0
    assert openai_server.requests == []


def test_empty_retrieval_scores_zero_without_a_request(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM
) -> None:
    for contexts in ([], ["", "   "]):
        result = faithfulness(llm, "Paris.", contexts)
        assert result.score == 0.0 and result.attempts == 0
        assert "no context" in result.reasoning
        assert relevancy(llm, "q?", "Paris.", contexts).score == 0.0
    assert openai_server.requests == []


# -- judge_many -------------------------------------------------------------------------------


def test_judge_many_runs_concurrently_and_keeps_order(
    openai_server: FakeOpenAIServer, llm: OpenAICompatibleLLM
) -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def reply(messages: Messages) -> str:
        nonlocal in_flight, peak
        match = re.search(r"Reference answer: (\d)", messages[1]["content"])
        assert match
        n = int(match.group(1))
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        # Earlier items answer later, so completion order is the reverse of input order.
        time.sleep(0.02 * (6 - n))
        with lock:
            in_flight -= 1
        return f"<score>{n}</score>"

    openai_server.reply = reply
    items = [1, 2, 3, 4, 5, 1, 2]
    seen: list[tuple[int, int]] = []
    results = judge_many(
        lambda n: correctness(llm, "q?", "a", str(n)),
        items,
        concurrency=4,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert [r.score for r in results] == [float(n) for n in items]
    assert peak > 1
    assert seen[-1] == (len(items), len(items))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_judge_many_serial_and_empty() -> None:
    seen: list[tuple[int, int]] = []
    assert judge_many(lambda x: x * 2, [1, 2, 3], concurrency=1, progress=lambda d, t: seen.append((d, t))) == [2, 4, 6]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert judge_many(lambda x: x, [], concurrency=8) == []
    with pytest.raises(ValueError, match="concurrency"):
        judge_many(lambda x: x, [1], concurrency=0)


def test_judge_many_propagates_errors() -> None:
    def fn(x: int) -> int:
        if x == 3:
            raise RuntimeError("boom")
        time.sleep(0.01)
        return x

    with pytest.raises(RuntimeError, match="boom"):
        judge_many(fn, range(20), concurrency=4)


# -- parse_score directly -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "I think it is good", "The answer mentions 2 facts but misses 3.", "Score: N", "<score></score>", "Score: 0"],
)
def test_parse_score_rejects_non_scores(text: str) -> None:
    assert parse_score(text, (1.0, 5.0)) is None


def test_prompts_are_module_constants() -> None:
    for name in ("CORRECTNESS_SYSTEM", "FAITHFULNESS_SYSTEM", "RELEVANCY_SYSTEM"):
        assert "<score>" in getattr(judge, name)


@pytest.mark.parametrize("text", ["No idea.", "Yes and no", "Nothing is supported", "Yesterday it was fine", "0.5"])
def test_parse_score_binary_rejects_ambiguous_verdicts(text: str) -> None:
    assert parse_score(text, (0.0, 1.0), binary=True) is None


@pytest.mark.parametrize(("text", "expected"), [("Yes - all supported", 1.0), ("**NO**", 0.0), ("false.", 0.0)])
def test_parse_score_binary_verdict_words(text: str, expected: float) -> None:
    found = parse_score(text, (0.0, 1.0), binary=True)
    assert found is not None and found[0] == expected
