"""Conversations with a knowledge base: follow-up questions made standalone, and their history in SQLite.

A follow-up ("and what about the 70B model?") means nothing to a retriever on its own. Before
retrieval it becomes a standalone question:

- with an LLM, the model rewrites it from the conversation so far (LlamaIndex's
  ``condense_plus_context`` chat mode, LangChain's ``ConversationalRetrievalChain``);
- offline, the entities of the previous standalone question that the follow-up does not name
  already (:class:`kvgraph.docgraph.extract.EntityExtractor`: names, acronyms, titles, keyphrases)
  are appended to it, so retrieval still sees what the conversation is about.

Conversations live in ``KB/conversations.sqlite``: each turn keeps the question as asked, the
standalone question retrieval used, the answer and its citations. The store is safe to share
between threads (one connection behind a lock; SQLite's WAL lets other processes read meanwhile).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError, KvgraphError
from kvgraph.llm.base import LLM, ChatMessage

CONVERSATIONS_FILE = "conversations.sqlite"
HISTORY_TURNS = 6  # turns the condensing model reads: enough for a thread, bounded for the prompt
MAX_ANSWER_CHARS = 1_500  # of each earlier answer in the condensing prompt
TITLE_CHARS = 80

CONDENSE_SYSTEM = """\
You rewrite the user's last message as one standalone question for a search engine.
- Use the conversation only to resolve what the message refers to (pronouns, "it", "the other one", "and ...").
- Keep every name, number and term the message uses; add the ones it leaves implicit.
- If the message is already a standalone question, return it unchanged.
- Reply with the question only: no answer, no explanation, no quotes."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    question TEXT NOT NULL,
    standalone TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,   -- JSON list of citation objects
    created_at TEXT NOT NULL,
    PRIMARY KEY (conversation_id, n)
);
"""


@dataclass(frozen=True)
class Exchange:
    """One earlier turn as the condensing step reads it: what was asked (standalone) and answered."""

    question: str
    answer: str
    standalone: str = ""  # the standalone form retrieval used; the question itself when empty


@dataclass(frozen=True)
class FollowUp:
    """A message made standalone: ``question`` is what retrieval and answering get.

    ``method`` says how: ``as-is`` (first turn, or nothing to add), ``llm`` (rewritten by the
    model) or ``entities`` (offline: ``added`` lists the earlier entities appended).
    """

    message: str
    question: str
    method: str
    added: list[str] = field(default_factory=list)


def condense_question(message: str, history: Sequence[Exchange], llm: LLM | None) -> FollowUp:
    """The standalone question for ``message`` after ``history`` (oldest first); see the module docstring."""
    if not isinstance(message, str) or not message.strip():
        raise InvalidInputError("message must be a non-empty string")
    message = message.strip()
    if not history:
        return FollowUp(message, message, "as-is")
    if llm is not None:
        return _condense_with_llm(message, history, llm)
    return _condense_offline(message, history[-1])


def condense_messages(message: str, history: Sequence[Exchange]) -> list[ChatMessage]:
    """The chat messages that ask a model for the standalone form of ``message``."""
    lines = []
    for turn in history[-HISTORY_TURNS:]:
        answer = " ".join(turn.answer.split())
        if len(answer) > MAX_ANSWER_CHARS:
            answer = answer[:MAX_ANSWER_CHARS] + " ..."
        lines += [f"User: {turn.question.strip()}", f"Assistant: {answer}"]
    user = "Conversation:\n" + "\n".join(lines) + f"\n\nLast message: {message}\n\nStandalone question:"
    return [ChatMessage("system", CONDENSE_SYSTEM), ChatMessage("user", user)]


def _condense_with_llm(message: str, history: Sequence[Exchange], llm: LLM) -> FollowUp:
    text = llm.complete(condense_messages(message, history), temperature=0.0, max_tokens=200)
    question = " ".join(text.strip().strip('"').split())
    if question.lower().startswith("standalone question:"):
        question = question.split(":", 1)[1].strip()
    # A model that answers instead of rewriting, or says nothing, must not derail retrieval.
    if not question or len(question) > 4 * len(message) + 400:
        return _condense_offline(message, history[-1])
    return FollowUp(message, question, "llm")


def _condense_offline(message: str, previous: Exchange) -> FollowUp:
    from kvgraph.docgraph.extract import EntityExtractor, entity_key

    extractor = EntityExtractor(phrases=True)
    said = {m.key for m in extractor.extract(message)}
    said_text = f" {entity_key(message)} "
    added = []
    for mention in extractor.extract(previous.standalone or previous.question):
        # "Llama 2" is already in "what about Llama 2 70B": a key inside the message's own words counts
        if mention.key in said or f" {mention.key} " in said_text:
            continue
        added.append(mention.name)
    if not added:
        return FollowUp(message, message, "as-is")
    return FollowUp(message, f"{message} ({'; '.join(added)})", "entities", added)


# ---------------------------------------------------------------------- the store


@dataclass
class Turn:
    """One stored turn of a conversation."""

    n: int
    question: str
    standalone: str
    answer: str
    citations: list[dict[str, Any]]
    created_at: str

    def exchange(self) -> Exchange:
        return Exchange(self.question, self.answer, self.standalone)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Conversation:
    """A conversation's header; ``turns`` is filled by :meth:`ConversationStore.get`."""

    id: str
    title: str
    created_at: str
    updated_at: str
    n_turns: int = 0
    turns: list[Turn] = field(default_factory=list)

    def history(self) -> list[Exchange]:
        return [t.exchange() for t in self.turns]

    def to_dict(self, with_turns: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "n_turns": self.n_turns,
        }
        if with_turns:
            d["turns"] = [t.to_dict() for t in self.turns]
        return d


class ConversationStore:
    """Conversations of one knowledge base, in ``KB/conversations.sqlite``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise KvgraphError(f"{self.path}: cannot open the conversation store: {e}") from None

    @classmethod
    def for_kb(cls, kb_path: str | os.PathLike[str]) -> ConversationStore:
        """The conversation store of the knowledge base at ``kb_path`` (created on first use)."""
        return cls(Path(kb_path) / CONVERSATIONS_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self, title: str = "") -> Conversation:
        """A new, empty conversation (titled after its first question when ``title`` is empty)."""
        now = _now()
        conv = Conversation(uuid.uuid4().hex[:16], _title(title), now, now)
        with self._lock:
            self._db.execute("INSERT INTO conversations VALUES (?,?,?,?)", (conv.id, conv.title, now, now))
        return conv

    def list(self) -> list[Conversation]:
        """Every conversation, the most recently used first, without turns."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.id, c.title, c.created_at, c.updated_at, count(t.n) FROM conversations c"
                " LEFT JOIN turns t ON t.conversation_id = c.id GROUP BY c.id ORDER BY c.updated_at DESC, c.id"
            ).fetchall()
        return [Conversation(*row) for row in rows]

    def get(self, conversation_id: str) -> Conversation:
        """The conversation with its turns; InvalidInputError naming the id when there is none."""
        with self._lock:
            head = self._db.execute(
                "SELECT id, title, created_at, updated_at FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            rows = self._db.execute(
                "SELECT n, question, standalone, answer, citations, created_at FROM turns"
                " WHERE conversation_id = ? ORDER BY n",
                (conversation_id,),
            ).fetchall()
        if head is None:
            raise ConversationNotFoundError(f"no conversation {conversation_id!r} in {self.path}")
        turns = [Turn(n, q, s, a, json.loads(c), at) for n, q, s, a, c, at in rows]
        cid, title, created, updated = head
        return Conversation(cid, title, created, updated, n_turns=len(turns), turns=turns)

    def add_turn(
        self, conversation_id: str, question: str, standalone: str, answer: str, citations: Sequence[dict[str, Any]]
    ) -> Turn:
        """Append a turn; the conversation takes the first question as its title when it has none."""
        now = _now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                head = self._db.execute("SELECT title FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
                if head is None:
                    raise ConversationNotFoundError(f"no conversation {conversation_id!r} in {self.path}")
                n = self._db.execute(
                    "SELECT coalesce(max(n), 0) + 1 FROM turns WHERE conversation_id = ?", (conversation_id,)
                ).fetchone()[0]
                self._db.execute(
                    "INSERT INTO turns VALUES (?,?,?,?,?,?,?)",
                    (conversation_id, n, question, standalone, answer, json.dumps(list(citations)), now),
                )
                title = head[0] or _title(question)
                self._db.execute(
                    "UPDATE conversations SET updated_at = ?, title = ? WHERE id = ?", (now, title, conversation_id)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Turn(int(n), question, standalone, answer, list(citations), now)

    def delete(self, conversation_id: str) -> None:
        """Delete a conversation and its turns; InvalidInputError naming the id when there is none."""
        with self._lock:
            gone = self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount
        if not gone:
            raise ConversationNotFoundError(f"no conversation {conversation_id!r} in {self.path}")


class ConversationNotFoundError(InvalidInputError):
    """A conversation id that the store does not have."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _title(text: str) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= TITLE_CHARS else flat[: TITLE_CHARS - 1] + "…"
