"""kvgraph's LangChain adapters with the real langchain-core, the real embedding model and real stores.

The standard suite (test_langchain_standard.py) checks the VectorStore contract; these check
what it does not: meaningful retrieval, filters and modes, the one-model-per-store rule, the
knowledge base's own retriever, and that kvgraph never imports LangChain by itself.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.runnables import RunnableLambda

from kvgraph.embed import Embedder
from kvgraph.embed.hashing import HashingEmbedder
from kvgraph.errors import InvalidFilterError, InvalidInputError
from kvgraph.integrations.langchain import KvgraphEmbeddings, KvgraphRetriever, KvgraphVectorStore
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import Document as KvgraphDocument
from kvgraph.store import EmbeddedVectorStore

# id, text, metadata
PASSAGES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "eiffel",
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, completed in 1889.",
        {"topic": "travel", "year": 1889, "tags": ["landmark", "france"]},
    ),
    (
        "photosynthesis",
        "Photosynthesis lets plants turn sunlight, water and carbon dioxide into glucose and oxygen.",
        {"topic": "science", "year": 1960, "tags": ["biology"]},
    ),
    (
        "jupiter",
        "Jupiter is the largest planet in the solar system, a gas giant with a huge red storm.",
        {"topic": "science", "year": 1979, "tags": ["astronomy"]},
    ),
    (
        "sourdough",
        "A sourdough loaf needs a lively starter, flour, water and salt, and a long, slow proof.",
        {"topic": "food", "year": 2015, "tags": ["baking"]},
    ),
    (
        "python",
        "The Python interpreter raises a KeyError when a dictionary lookup uses a key that is missing.",
        {"topic": "tech", "year": 2020, "tags": ["code"]},
    ),
]
IDS = [pid for pid, _, _ in PASSAGES]
TEXTS = [text for _, text, _ in PASSAGES]
METAS = [md for _, _, md in PASSAGES]

QUESTIONS = {
    "Which famous iron landmark stands in the French capital?": "eiffel",
    "How do green leaves make sugar out of light?": "photosynthesis",
    "What is the biggest world orbiting the sun?": "jupiter",
    "What do I need to bake naturally leavened bread?": "sourdough",
    "Why does my program crash when I read a dict entry that isn't there?": "python",
}


@pytest.fixture(scope="module")
def embeddings(embedder: Embedder) -> KvgraphEmbeddings:
    return KvgraphEmbeddings(embedder)


@pytest.fixture
def store(tmp_path: Path, embeddings: KvgraphEmbeddings) -> Iterator[KvgraphVectorStore]:
    with KvgraphVectorStore(tmp_path / "store", embeddings) as vs:
        vs.add_texts(TEXTS, METAS, ids=IDS)
        yield vs


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    """A knowledge base with the passages ingested as documents (its own embedder, the default model)."""
    with KnowledgeBase.open(tmp_path_factory.mktemp("lc-kb") / "kb") as kb:
        kb.add_documents([KvgraphDocument(id=pid, text=text, metadata=md) for pid, text, md in PASSAGES])
        yield kb


class _RefusingEmbeddings(Embeddings):
    """Fails the test if anything is embedded (to show a mode embeds nothing)."""

    model_name = "refusing"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise AssertionError("must not embed documents")

    def embed_query(self, text: str) -> list[float]:
        raise AssertionError("must not embed the query")


# ---------------------------------------------------------------- retrieval


def test_similarity_search_finds_paraphrased_passages(store: KvgraphVectorStore) -> None:
    for question, pid in QUESTIONS.items():
        [doc] = store.similarity_search(question, k=1)
        assert doc.id == pid, question
        assert doc.page_content == TEXTS[IDS.index(pid)]
        assert doc.metadata == METAS[IDS.index(pid)]


def test_scores_are_cosine_similarities(store: KvgraphVectorStore, embedder: Embedder) -> None:
    question = "What is the biggest world orbiting the sun?"
    hits = store.similarity_search_with_score(question, k=3)
    q = embedder.embed([question])[0]
    docs = embedder.embed([d.page_content for d, _ in hits])
    expected = docs @ q / (np.linalg.norm(docs, axis=1) * np.linalg.norm(q))
    np.testing.assert_allclose([s for _, s in hits], expected, atol=1e-4)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    # relevance scores are the same similarities, clipped to [0, 1]; the threshold retriever cuts on them
    relevance = store.similarity_search_with_relevance_scores(question, k=5)
    assert [s for _, s in relevance][:3] == pytest.approx([s for _, s in hits])
    assert min(s for _, s in relevance) == 0.0  # the last passage's cosine is negative
    cut = (hits[0][1] + hits[1][1]) / 2
    retriever = store.as_retriever(search_type="similarity_score_threshold", search_kwargs={"score_threshold": cut})
    assert [d.id for d in retriever.invoke(question)] == ["jupiter"]


def test_kvgraph_filters_restrict_the_search(store: KvgraphVectorStore) -> None:
    question = "Which famous iron landmark stands in the French capital?"
    got = store.similarity_search(question, k=5, filter={"topic": "science"})
    assert {d.id for d in got} == {"photosynthesis", "jupiter"}
    got = store.similarity_search(
        question, k=5, filter={"$and": [{"year": {"$gte": 2000}}, {"topic": {"$ne": "tech"}}]}
    )
    assert [d.id for d in got] == ["sourdough"]
    retriever = store.as_retriever(search_kwargs={"k": 5, "filter": {"tags": {"$contains": "code"}}})
    assert [d.id for d in retriever.invoke(question)] == ["python"]
    with pytest.raises(InvalidFilterError):
        store.similarity_search(question, filter={"year": {"$near": 3}})


def test_sparse_mode_embeds_nothing(store: KvgraphVectorStore) -> None:
    path = store.client.path
    store.close()
    with KvgraphVectorStore(path, _RefusingEmbeddings(), embedding_model=store.embedding_model) as sparse:
        assert [d.id for d in sparse.similarity_search("KeyError", k=1, mode="sparse")] == ["python"]
        assert sparse.similarity_search("jogging cardiovascular", k=3, mode="sparse") == []  # no shared term
        with pytest.raises(AssertionError, match="must not embed"):
            sparse.similarity_search("KeyError", k=1)  # the dense mode embeds


def test_hybrid_mode(store: KvgraphVectorStore) -> None:
    hits = store.similarity_search_with_score("KeyError dictionary", k=3, mode="hybrid", alpha=0.5)
    assert hits[0][0].id == "python" and len(hits) == 3
    with pytest.raises(InvalidInputError, match="mode"):
        store.similarity_search("x", mode="semantic")
    with pytest.raises(InvalidInputError, match="fetch"):
        store.similarity_search("x", fetch=3)


def test_mmr_trades_relevance_for_diversity(store: KvgraphVectorStore) -> None:
    twin = "Completed in 1889, the Eiffel Tower is a wrought-iron lattice tower in Paris on the Champ de Mars."
    store.add_texts([twin], [{"topic": "travel", "year": 1889}], ids=["eiffel-twin"])
    q = "Which famous iron landmark stands in the French capital?"
    assert {d.id for d in store.similarity_search(q, k=2)} == {"eiffel", "eiffel-twin"}
    relevance_only = store.max_marginal_relevance_search(q, k=2, fetch_k=5, lambda_mult=1.0)
    assert {d.id for d in relevance_only} == {"eiffel", "eiffel-twin"}
    diverse = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 5, "lambda_mult": 0.3})
    got = [d.id for d in diverse.invoke(q)]
    assert got[0] in ("eiffel", "eiffel-twin") and len(set(got) & {"eiffel", "eiffel-twin"}) == 1


def test_retriever_in_a_runnable_chain_and_async(store: KvgraphVectorStore) -> None:
    chain = store.as_retriever(search_kwargs={"k": 1}) | RunnableLambda(lambda docs: docs[0].metadata["topic"])
    assert chain.invoke("Is a gas giant the largest planet?") == "science"
    docs = asyncio.run(store.as_retriever(search_kwargs={"k": 1}).ainvoke("How is bread leavened?"))
    assert [d.id for d in docs] == ["sourdough"]


# ---------------------------------------------------------------- writing, reading back


def test_documents_round_trip_and_replace_by_id(store: KvgraphVectorStore) -> None:
    assert [d.id for d in store.get_by_ids(["python", "nope", "eiffel"])] == ["python", "eiffel"]
    [stored] = store.client.get(["jupiter"])
    assert stored is not None and stored.metadata == METAS[2] and stored.text == TEXTS[2]
    ids = store.add_documents([Document(id="jupiter", page_content="Jupiter has at least 95 moons.")])
    assert ids == ["jupiter"] and store.client.count() == len(PASSAGES)
    assert store.get_by_ids(["jupiter"]) == [Document(id="jupiter", page_content="Jupiter has at least 95 moons.")]
    assert store.similarity_search("How many moons does Jupiter have?", k=1)[0].id == "jupiter"


def test_bad_metadata_and_ids_are_rejected_before_writing(store: KvgraphVectorStore) -> None:
    before = store.client.count()
    with pytest.raises(InvalidInputError, match=r"'nested'.*flatten"):
        store.add_texts(["a", "b"], [{"ok": 1}, {"nested": {"a": 1}}])
    with pytest.raises(InvalidInputError, match="2 metadatas for 1 texts"):
        store.add_texts(["a"], [{}, {}])
    with pytest.raises(InvalidInputError, match="non-empty string"):
        store.add_texts(["a"], ids=[""])
    assert store.client.count() == before
    ids = store.add_texts(["numpy values"], [{"n": np.int64(3), "pair": (1, 2)}])
    assert store.get_by_ids(ids)[0].metadata == {"n": 3, "pair": [1, 2]}


def test_delete_needs_ids(store: KvgraphVectorStore) -> None:
    with pytest.raises(InvalidInputError, match=r"client\.ids"):
        store.delete()
    assert store.delete(["python", "no-such-id"]) is True
    assert store.client.count() == len(PASSAGES) - 1
    store.delete(store.client.ids())
    assert store.client.count() == 0


def test_from_texts_and_reopen(tmp_path: Path, embeddings: KvgraphEmbeddings) -> None:
    with pytest.raises(InvalidInputError, match="store="):
        KvgraphVectorStore.from_texts(TEXTS, embeddings)
    with KvgraphVectorStore.from_texts(TEXTS, embeddings, METAS, ids=IDS, store=tmp_path / "s") as first:
        assert first.client.count() == len(PASSAGES)
    with KvgraphVectorStore(tmp_path / "s", embeddings) as again:
        assert again.similarity_search("a giant planet", k=1)[0].id == "jupiter"


def test_adapter_over_an_open_store_leaves_it_open(tmp_path: Path, embeddings: KvgraphEmbeddings) -> None:
    opened = EmbeddedVectorStore.open(tmp_path / "open")
    try:
        with KvgraphVectorStore(opened, embeddings) as vs:
            vs.add_texts(TEXTS[:2], ids=IDS[:2])
        assert opened.count() == 2
        with pytest.raises(InvalidInputError, match="only apply"):
            KvgraphVectorStore(opened, embeddings, dim=384)
        with pytest.raises(InvalidInputError, match="needs an embedding"):
            KvgraphVectorStore(opened)
    finally:
        opened.close()


# ---------------------------------------------------------------- one embedding model per store


def test_another_model_is_refused_naming_both(kb: KnowledgeBase) -> None:
    recorded = kb.store.get_meta("embedding_model")
    assert recorded == kb.embedder.model_name
    before = kb.store.count()
    with pytest.raises(InvalidInputError) as err:
        KvgraphVectorStore(kb, KvgraphEmbeddings(HashingEmbedder(384)))
    message = str(err.value)
    assert recorded in message and "hashing-384" in message and "\n" not in message
    assert kb.store.count() == before


def test_an_unnamed_model_cannot_write_into_a_knowledge_base(kb: KnowledgeBase) -> None:
    recorded = kb.store.get_meta("embedding_model")
    before = kb.store.count()
    unnamed = KvgraphVectorStore(kb, DeterministicFakeEmbedding(size=384))
    with pytest.raises(InvalidInputError, match=f"embedding_model='{recorded}'"):
        unnamed.add_texts(["fake vectors"])
    assert kb.store.count() == before
    with pytest.raises(InvalidInputError, match="fake-384"):  # named: refused at once
        KvgraphVectorStore(kb, DeterministicFakeEmbedding(size=384), embedding_model="fake-384")


def test_a_bare_store_takes_the_first_named_model(tmp_path: Path, embeddings: KvgraphEmbeddings) -> None:
    path = tmp_path / "bare"
    with KvgraphVectorStore(path, DeterministicFakeEmbedding(size=384)) as unnamed:
        unnamed.add_texts(["no model recorded yet"])  # nothing to check against: accepted
        assert unnamed.client.get_meta("embedding_model") is None
    with KvgraphVectorStore(path, embeddings) as named:
        named.add_texts(["the first named model"])
        assert named.client.get_meta("embedding_model") == embeddings.model_name
    with pytest.raises(InvalidInputError, match="hashing-384"):
        KvgraphVectorStore(path, KvgraphEmbeddings(HashingEmbedder(384)))
    with KvgraphVectorStore(path, DeterministicFakeEmbedding(size=384)) as unnamed:
        with pytest.raises(InvalidInputError, match="not told"):
            unnamed.add_texts(["refused now"])
        assert unnamed.client.count() == 2


# ---------------------------------------------------------------- over a knowledge base


def test_vector_store_over_a_knowledge_base(kb: KnowledgeBase) -> None:
    vs = KvgraphVectorStore(kb)
    assert isinstance(vs.embeddings, KvgraphEmbeddings) and vs.embedding_model == kb.embedder.model_name
    [doc] = vs.similarity_search("What is the biggest world orbiting the sun?", k=1)
    assert "Jupiter" in doc.page_content and doc.metadata["topic"] == "science"
    ids = vs.add_texts(["Saturn's rings are made of ice and rock."], [{"topic": "science"}])
    try:
        hits = kb.search("What are the rings of Saturn made of?", k=1)
        assert hits[0].node.id == ids[0]  # the knowledge base finds what LangChain wrote
        kb.refresh()  # the knowledge base reopens its store; the adapter follows it
        assert vs.get_by_ids(ids)[0].page_content.startswith("Saturn")
    finally:
        vs.delete(ids)


def test_knowledge_base_retriever(kb: KnowledgeBase) -> None:
    retriever = KvgraphRetriever(kb, k=2)
    docs = retriever.invoke("Why does my program crash when I read a dict entry that isn't there?")
    assert len(docs) == 2 and "KeyError" in docs[0].page_content
    assert docs[0].id == kb.search("Why does my program crash on a missing dict key?", k=1)[0].node.id
    science = KvgraphRetriever(kb, k=5, filters={"topic": "science"}).invoke("anything")
    assert {d.metadata["topic"] for d in science} == {"science"} and len(science) == 2
    assert "Eiffel" in KvgraphRetriever(kb, k=1, mode="sparse").invoke("Eiffel")[0].page_content
    with pytest.raises(InvalidInputError, match="KnowledgeBase"):
        KvgraphRetriever(object())  # type: ignore[arg-type]


# ---------------------------------------------------------------- embeddings, imports


def test_embeddings_wrapper_matches_the_kvgraph_embedder(embedder: Embedder, embeddings: KvgraphEmbeddings) -> None:
    direct = embedder.embed(TEXTS[:3])
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS[:3]), direct, atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_query(TEXTS[1]), direct[1], atol=1e-6)
    np.testing.assert_allclose(asyncio.run(embeddings.aembed_documents(TEXTS[:3])), direct, atol=1e-6)
    assert embeddings.model_name == embedder.model_name
    assert embeddings.embed_documents([]) == []
    with pytest.raises(InvalidInputError, match="Embedder"):
        KvgraphEmbeddings(object())  # type: ignore[arg-type]


def test_kvgraph_never_imports_langchain_and_missing_dependency_is_named() -> None:
    code = (
        "import sys\n"
        "import kvgraph, kvgraph.store, kvgraph.embed, kvgraph.integrations\n"
        "import kvgraph.integrations.langchain_graph, kvgraph.integrations.store_binding\n"
        "assert not any(m.split('.')[0].startswith('langchain') for m in sys.modules), 'kvgraph imported langchain'\n"
        "sys.modules['langchain_core'] = None\n"
        "from kvgraph.errors import MissingDependencyError\n"
        "try:\n"
        "    import kvgraph.integrations.langchain\n"
        "except MissingDependencyError as e:\n"
        "    assert isinstance(e, ImportError)\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "langchain-core is not installed: pip install 'kvgraph[langchain]'" in out.stdout
