"""LangChain's own standard test suite (``langchain-tests``) run against kvgraph's vector store.

Twice: over a bare store directory with the suite's embeddings (``DeterministicFakeEmbedding``,
what every LangChain integration is tested with), and over a knowledge base with its real
embedding model, as a user would use it. The suite's tests themselves are not overridden
(``test_no_overrides_DO_NOT_OVERRIDE`` checks that).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests

from kvgraph.integrations.langchain import KvgraphVectorStore
from kvgraph.kb import KnowledgeBase


class TestKvgraphStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path: Path) -> Iterator[VectorStore]:
        with KvgraphVectorStore(tmp_path / "store", self.get_embeddings(), embedding_model="fake-6") as store:
            yield store


@pytest.fixture(scope="module")
def knowledge_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    with KnowledgeBase.open(tmp_path_factory.mktemp("langchain") / "kb") as kb:
        yield kb


class TestKvgraphKnowledgeBaseStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, knowledge_base: KnowledgeBase) -> Iterator[VectorStore]:
        store = KvgraphVectorStore(knowledge_base)  # the knowledge base's own (real) embedding model
        assert store.client.count() == 0
        try:
            yield store
        finally:  # the suite expects an empty store for every test
            store.delete(store.client.ids())
