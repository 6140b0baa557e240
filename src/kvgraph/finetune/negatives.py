"""Hard negatives mined from a knowledge base's own index.

For each pair, the query is searched with the current retriever; the best-ranked chunk that is
not the positive, not from the positive's document and does not contain the query's text
becomes the pair's ``negative``: a chunk the current model confuses with the right one, which
teaches more than a random in-batch negative. Chunks of the positive's document are skipped
because they often answer the question too (a false negative would teach the wrong thing);
``skip_top`` skips the very first hits for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from kvgraph.finetune.pairs import TrainingPair, normalize_query
from kvgraph.retrieve.base import Retriever


def mine_hard_negatives(
    pairs: Sequence[TrainingPair],
    retriever: Retriever,
    k: int = 10,
    skip_top: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[TrainingPair]:
    """The pairs with ``negative`` set where a hard negative was found among the top ``k`` (others unchanged)."""
    out: list[TrainingPair] = []
    for n, pair in enumerate(pairs, start=1):
        hits = retriever.retrieve(pair.query, k)[skip_top:]
        query_key = normalize_query(pair.query)
        positive_key = normalize_query(pair.positive)
        negative = ""
        for hit in hits:
            node = hit.node
            if node.id == pair.positive_id or (pair.doc_id and (node.ref_doc_id or node.id) == pair.doc_id):
                continue
            text_key = normalize_query(node.text)
            if query_key and query_key in text_key:  # the query's own sentence: it is a positive too
                continue
            if text_key == positive_key or positive_key in text_key or (text_key and text_key in positive_key):
                continue
            negative = node.text
            break
        out.append(replace(pair, negative=negative) if negative else pair)
        if progress is not None:
            progress(n, len(pairs))
    return out
