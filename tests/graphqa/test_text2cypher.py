"""Text-to-Cypher over the real DevOps graph (Ladybug) with a scripted model on a loopback OpenAI server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devops_support import NOTEBOOK_SCRIPTS, Script, ScriptedLLM, import_devops, questions, serving
from kvgraph.graphdb.base import GraphSchema, WriteRejectedError
from kvgraph.graphdb.ladybug import LadybugGraphStore
from kvgraph.graphqa.text2cypher import (
    CypherGenerationError,
    TextToCypher,
    clean_cypher,
    correct_directions,
)
from kvgraph.llm.base import LLMUnavailableError

# ---------------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "```cypher\nMATCH (t:Task) RETURN count(t) AS n\n```\nThis query counts tasks.",
            "MATCH (t:Task) RETURN count(t) AS n",
        ),
        ("```\nMATCH (n) RETURN n\n```", "MATCH (n) RETURN n"),
        (
            "cypher\nMATCH (t:Task)\nWHERE t.status = 'open'\nRETURN count(t)",
            "MATCH (t:Task)\nWHERE t.status = 'open'\nRETURN count(t)",
        ),
        (
            "Cypher: MATCH (n:Task) RETURN n.name AS name\nExplanation: the query lists tasks.",
            "MATCH (n:Task) RETURN n.name AS name",
        ),
        ("Here is the query: MATCH (n) RETURN n;", "MATCH (n) RETURN n"),
        ("MATCH (m) RETURN m.name</s>", "MATCH (m) RETURN m.name"),
        ("<|im_start|>assistant\nMATCH (m) RETURN m<|im_end|>", "MATCH (m) RETURN m"),
        (
            "Sure! Here's the Cypher query:\n\nMATCH (t:Task)\n  WHERE t.status = 'open'\nRETURN t.name AS task;\n\n"
            "This returns the open tasks.",
            "MATCH (t:Task)\n  WHERE t.status = 'open'\nRETURN t.name AS task",
        ),
        ("MATCH (a:Task)\n\nRETURN a", "MATCH (a:Task)\nRETURN a"),
        # a ';' inside a string is data; a second statement after the first ';' is dropped
        ("MATCH (t:Task {name: 'a;b'}) RETURN t; MATCH (n) DETACH DELETE n", "MATCH (t:Task {name: 'a;b'}) RETURN t"),
        # a write stays a write, to be refused by the guard (not silently turned into something else)
        ("CREATE (n:Task {name: 'x'})", "CREATE (n:Task {name: 'x'})"),
        ("", ""),
    ],
)
def test_clean_cypher(reply: str, expected: str) -> None:
    assert clean_cypher(reply) == expected


# ---------------------------------------------------------------------- direction correction

SCHEMA = GraphSchema(
    rel_endpoints={
        "ASSIGNED_TO": [("Task", "Team")],
        "DEPENDS_ON": [("Microservice", "Microservice")],
        "PART_OF": [("Person", "Team")],
        "LINKED_TO": [("Task", "Microservice")],
    }
)


@pytest.mark.parametrize(
    ("cypher", "expected"),
    [
        # contradicts (:Task)-[:ASSIGNED_TO]->(:Team): flipped
        (
            "MATCH (team:Team)-[:ASSIGNED_TO]->(t:Task) RETURN team.name, count(t)",
            "MATCH (team:Team)<-[:ASSIGNED_TO]-(t:Task) RETURN team.name, count(t)",
        ),
        (
            "MATCH (t:Task)<-[r:ASSIGNED_TO]-(team:Team) RETURN r",
            "MATCH (t:Task)-[r:ASSIGNED_TO]->(team:Team) RETURN r",
        ),
        # labels bound elsewhere in the query
        (
            "MATCH (t:Task), (team:Team) MATCH (team)-[:ASSIGNED_TO]->(t) RETURN 1",
            "MATCH (t:Task), (team:Team) MATCH (team)<-[:ASSIGNED_TO]-(t) RETURN 1",
        ),
        # a chain: only the wrong hop is flipped
        (
            "MATCH (p:Person)<-[:PART_OF]-(team:Team)<-[:ASSIGNED_TO]-(t:Task) RETURN p",
            "MATCH (p:Person)-[:PART_OF]->(team:Team)<-[:ASSIGNED_TO]-(t:Task) RETURN p",
        ),
        # one known end is enough
        ("MATCH (m:Microservice)-[:LINKED_TO]->(x) RETURN x", "MATCH (m:Microservice)<-[:LINKED_TO]-(x) RETURN x"),
    ],
)
def test_correct_directions_flips_contradicting_hops(cypher: str, expected: str) -> None:
    assert correct_directions(cypher, SCHEMA) == expected


@pytest.mark.parametrize(
    "cypher",
    [
        "MATCH (t:Task)-[:ASSIGNED_TO]->(team:Team) RETURN 1",  # already right
        "MATCH (team:Team)-[:ASSIGNED_TO]-(t:Task) RETURN 1",  # undirected
        "MATCH (m:Microservice)<-[:DEPENDS_ON*1..3]-(d:Microservice) RETURN m",  # both directions exist
        "MATCH (a)-[:ASSIGNED_TO]->(b) RETURN a",  # labels unknown
        "MATCH (a:Team)-[:UNKNOWN]->(b:Task) RETURN a",  # type not in the schema
        "MATCH (a:Person)-[:ASSIGNED_TO]->(b:Microservice) RETURN a",  # neither direction exists
    ],
)
def test_correct_directions_leaves_the_rest_alone(cypher: str) -> None:
    assert correct_directions(cypher, SCHEMA) == cypher


# ---------------------------------------------------------------------- against the DevOps graph


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LadybugGraphStore]:
    store = import_devops(tmp_path_factory.mktemp("devops") / "graph")
    try:
        yield store
    finally:
        store.close()


def counts(store: LadybugGraphStore) -> tuple[int, int]:
    return (
        store.query("MATCH (n) RETURN count(n)").scalar(),
        store.query("MATCH ()-[r]->() RETURN count(r)").scalar(),
    )


def run_script(store: LadybugGraphStore, scripts: dict[str, Script], question: str, **kwargs: Any) -> tuple:
    scripted = ScriptedLLM(scripts)
    with serving(scripted) as (llm, _):
        return TextToCypher(llm, store, **kwargs).ask(question), scripted


def test_the_notebook_questions_give_the_gold_rows(graph: LadybugGraphStore) -> None:
    qs = questions()
    scripts = {qs[qid]["question"]: script for qid, script in NOTEBOOK_SCRIPTS.items()}
    scripted = ScriptedLLM(scripts)
    with serving(scripted) as (llm, _):
        t2c = TextToCypher(llm, graph)
        answers = {qid: t2c.ask(qs[qid]["question"]) for qid in NOTEBOOK_SCRIPTS}

    for qid in ("devops-02", "devops-03"):
        assert answers[qid].rows == [[qs[qid]["gold_answer"]]]
        assert str(qs[qid]["gold_answer"]) in answers[qid].answer_text
    gold4 = qs["devops-04"]["gold_answer"]
    assert answers["devops-04"].rows == [[gold4["team"], gold4["open_tasks"]]]
    assert sorted(r[0] for r in answers["devops-05"].rows) == qs["devops-05"]["gold_answer"]
    assert sorted({r[0] for r in answers["devops-06"].rows}) == qs["devops-06"]["gold_answer"]
    for name in qs["devops-06"]["gold_answer"]:
        assert name in answers["devops-06"].answer_text

    # cleaning: the fence, the "cypher" prefix and the template token are gone from what ran
    assert answers["devops-02"].cypher == "MATCH (t:Task {status:'open'}) RETURN count(*)"
    assert answers["devops-03"].cypher.startswith("MATCH")
    assert "<|" not in answers["devops-04"].cypher
    # the open-ended traversal was refused by the guard and fixed by the retry, which carried the message
    attempts = answers["devops-06"].attempts
    assert len(attempts) == 2 and "upper bound" in (attempts[0].error or "")
    assert "*2..5" in answers["devops-06"].cypher
    assert all(len(answers[q].attempts) == 1 for q in ("devops-02", "devops-03", "devops-04", "devops-05"))
    # every prompt carried the schema with its directions; every answer prompt the query and its rows
    assert all("(:Task)-[:ASSIGNED_TO]->(:Team)" in r[0]["content"] for r in scripted.cypher_requests)
    assert any("MATCH (t:Task)-[:ASSIGNED_TO]->(team:Team)" in r[-1]["content"] for r in scripted.answer_requests)


def test_retry_fixes_a_query_with_the_engines_error(graph: LadybugGraphStore) -> None:
    q = questions()["devops-05"]
    # the notebook's own query: :Dependency does not exist in the saved data
    script = Script(
        [
            q["notebook_generated_cypher"],
            "MATCH (m:Microservice)-[:DEPENDS_ON]->(d:Microservice) WHERE d.name = 'Database' RETURN m.name",
        ],
        needs=["Dependency does not exist"],
    )
    answer, scripted = run_script(graph, {q["question"]: script}, q["question"])
    assert sorted(r[0] for r in answer.rows) == q["gold_answer"]
    assert len(answer.attempts) == 2
    assert "Binder exception" in (answer.attempts[0].error or "")
    retry = scripted.cypher_requests[1]
    assert retry[-2] == {"role": "assistant", "content": q["notebook_generated_cypher"]}
    assert "Dependency does not exist" in retry[-1]["content"]


def test_no_retries_left_raises_with_every_attempt(graph: LadybugGraphStore) -> None:
    bad = "MATCH (t:Task) WHERE t.state = 'open' RETURN count(t)"
    question = "How many open tasks?"
    with pytest.raises(CypherGenerationError, match="Cannot find property state") as err:
        run_script(graph, {question: Script([bad], needs=["never in the error"])}, question)
    assert [a.cypher for a in err.value.attempts] == [bad, bad]

    with pytest.raises(CypherGenerationError) as err:
        run_script(graph, {question: Script([bad])}, question, retries=0)
    assert len(err.value.attempts) == 1


def test_direction_correction_turns_empty_rows_into_the_answer(graph: LadybugGraphStore) -> None:
    q = questions()["devops-04"]
    reversed_query = (
        "MATCH (team:Team)-[:ASSIGNED_TO]->(t:Task) WHERE t.status = 'open' "
        "RETURN team.name AS team, count(t) AS open_tasks ORDER BY open_tasks DESC LIMIT 1"
    )
    answer, _ = run_script(graph, {q["question"]: Script([reversed_query])}, q["question"])
    assert answer.rows == [[q["gold_answer"]["team"], q["gold_answer"]["open_tasks"]]]
    assert answer.attempts[0].corrected
    assert "(team:Team)<-[:ASSIGNED_TO]-(t:Task)" in answer.cypher

    # without the correction the engine runs it and finds nothing: the correction is what answers
    answer, _ = run_script(graph, {q["question"]: Script([reversed_query])}, q["question"], fix_directions=False)
    assert answer.rows == [] and not answer.attempts[0].corrected


@pytest.mark.parametrize(
    "write",
    [
        "MATCH (t:Task) DETACH DELETE t",
        "```cypher\nCREATE (x:Task {name: 'Injected', description: 'x', status: 'open'})\n```",
        "MATCH (t:Task) SET t.status = 'completed' RETURN count(t)",
        "MATCH (t:Task) RETURN count(t); MATCH (n) DETACH DELETE n",
    ],
)
def test_a_generated_write_is_refused_and_changes_nothing(graph: LadybugGraphStore, write: str) -> None:
    before = counts(graph)
    open_before = graph.query("MATCH (t:Task) WHERE t.status = 'open' RETURN count(t)").scalar()
    question = "Close all tasks"
    if ";" in write:
        # the second statement is cut off by cleaning: what runs is the harmless first one
        answer, _ = run_script(graph, {question: Script([write])}, question)
        assert answer.cypher == "MATCH (t:Task) RETURN count(t)"
    else:
        with pytest.raises(WriteRejectedError, match="refused"):
            run_script(graph, {question: Script([write])}, question)
    assert counts(graph) == before
    assert graph.query("MATCH (t:Task) WHERE t.status = 'open' RETURN count(t)").scalar() == open_before


def test_a_refused_write_is_not_retried(graph: LadybugGraphStore) -> None:
    question = "Delete everything"
    scripted = ScriptedLLM({question: Script(["MATCH (n) DETACH DELETE n", "MATCH (n) RETURN count(n)"])})
    with serving(scripted) as (llm, _), pytest.raises(WriteRejectedError):
        TextToCypher(llm, graph).ask(question)
    assert len(scripted.cypher_requests) == 1


def test_generate_returns_a_validated_query_without_running_it(graph: LadybugGraphStore) -> None:
    q = questions()["devops-03"]
    scripted = ScriptedLLM({q["question"]: NOTEBOOK_SCRIPTS["devops-03"]})
    with serving(scripted) as (llm, _):
        cypher = TextToCypher(llm, graph).generate(q["question"])
    assert cypher == "MATCH (t:Task {status: 'open'}) RETURN COUNT(t)"
    assert scripted.answer_requests == []  # nothing was answered, so nothing needed to run


def test_few_shot_examples_are_sent_as_earlier_turns(graph: LadybugGraphStore) -> None:
    examples = [("How many teams are there?", "MATCH (t:Team) RETURN count(t) AS teams")]
    q = questions()["devops-03"]
    answer, scripted = run_script(
        graph, {q["question"]: NOTEBOOK_SCRIPTS["devops-03"]}, q["question"], examples=examples
    )
    sent = scripted.cypher_requests[0]
    assert sent[1] == {"role": "user", "content": "Question: How many teams are there?"}
    assert sent[2] == {"role": "assistant", "content": "MATCH (t:Team) RETURN count(t) AS teams"}
    assert sent[-1] == {"role": "user", "content": f"Question: {q['question']}"}
    assert answer.rows == [[5]]


def test_without_an_llm_the_error_points_at_graph_query(graph: LadybugGraphStore) -> None:
    with pytest.raises(LLMUnavailableError, match="KVGRAPH_LLM_BASE_URL") as err:
        TextToCypher(None, graph).ask("How many open tickets there are?")
    assert "kvgraph graph query" in str(err.value)


def test_synthesize_false_answers_with_the_rows(graph: LadybugGraphStore) -> None:
    q = questions()["devops-04"]
    with serving(ScriptedLLM({q["question"]: NOTEBOOK_SCRIPTS["devops-04"]})) as (llm, server):
        plain = TextToCypher(llm, graph).ask(q["question"], synthesize=False)
        assert len(server.requests_to("/v1/chat/completions")) == 1  # the query only; no answering call
    assert plain.answer_text.splitlines() == ["team.name | OpenTasks", "TeamA | 3"]
