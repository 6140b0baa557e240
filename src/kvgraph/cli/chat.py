"""``kvgraph chat``: questions and follow-ups in the terminal, kept as a conversation in the knowledge base."""

from __future__ import annotations

import sys
from typing import Any

import click

from kvgraph.cli.common import echo_json
from kvgraph.cli.common import kb_path as _kb_path


def register(main: click.Group) -> None:
    @main.command("chat")
    @click.option("--conversation", "conversation_id", default=None, metavar="ID", help="Continue this conversation.")
    @click.option("--list", "list_only", is_flag=True, help="List the stored conversations and exit.")
    @click.option("--delete", "delete_id", default=None, metavar="ID", help="Delete a conversation and exit.")
    @click.option("-k", "k", type=int, default=None, help="How many chunks to answer from (default 5).")
    @click.option(
        "--mode",
        type=click.Choice(["dense", "sparse", "hybrid", "mmr", "graph"]),
        default=None,
        help="Retrieval mode (default: the knowledge base's).",
    )
    @click.option("--json", "as_json", is_flag=True, help="With --list: print JSON.")
    @click.pass_context
    def chat(
        ctx: click.Context,
        conversation_id: str | None,
        list_only: bool,
        delete_id: str | None,
        k: int | None,
        mode: str | None,
        as_json: bool,
    ) -> None:
        """Ask questions one per line; follow-ups see the conversation. /quit or end of input stops.

        With an LLM each follow-up is rewritten as a standalone question before retrieval;
        offline, the previous question's names and key phrases are added to it.
        """
        from kvgraph.kb import KnowledgeBase
        from kvgraph.kb.conversations import ConversationStore

        path = _kb_path(ctx)
        with ConversationStore.for_kb(path) as store:
            if list_only:
                rows = [c.to_dict(with_turns=False) for c in store.list()]
                if as_json:
                    echo_json(rows)
                for c in [] if as_json else rows:
                    click.echo(f"{c['id']}  {c['n_turns']} turns  {c['updated_at']}  {c['title']}")
                return
            if delete_id:
                store.delete(delete_id)
                click.echo(f"deleted conversation {delete_id}")
                return
            conversation = store.get(conversation_id) if conversation_id else None
            with KnowledgeBase.open(path, read_only=True) as kb:
                streams = hasattr(kb.answerer(), "stream")
                for line in _questions():
                    if conversation is None:
                        conversation = store.create()
                        click.echo(f"(conversation {conversation.id})", err=True)
                    history = store.get(conversation.id).history()
                    follow = kb.condense(line, history)
                    if follow.method != "as-is":
                        click.echo(f"(searching for: {follow.question})", err=True)
                    answer = _answer(kb, follow.question, k, mode, streams)
                    citations = [c.__dict__ for c in answer.citations]
                    store.add_turn(conversation.id, line, follow.question, answer.text, citations)


def _questions() -> Any:
    """Non-empty lines from standard input until end of input or /quit."""
    while True:
        if sys.stdin.isatty():
            click.echo("> ", nl=False, err=True)
        line = sys.stdin.readline()
        if not line:
            return
        text = line.strip()
        if text in ("/quit", "/exit"):
            return
        if text:
            yield text


def _answer(kb: Any, question: str, k: int | None, mode: str | None, streams: bool) -> Any:
    from kvgraph.cli.kb import print_answer

    streaming = kb.ask_stream(question, k=k, mode=mode)
    if streams:  # an LLM writes the answer: show it as it comes
        for delta in streaming:
            click.echo(delta, nl=False)
        click.echo()
        answer = streaming.answer()
        print_answer(answer, text=False)
    else:
        answer = streaming.answer()
        print_answer(answer)
    click.echo()
    return answer
