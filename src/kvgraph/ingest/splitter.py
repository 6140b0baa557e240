"""Sentence-aware chunking, counted in the embedder's own tokens.

A document is cut into sentences (``kvgraph.text``), each sentence is counted
once (one batched call for all documents), and consecutive sentences are packed greedily
into chunks of at most ``chunk_size`` tokens. A sentence longer than ``chunk_size`` is
cut at clause punctuation, then between words, and a single word longer than
``chunk_size`` (a base64 blob, a long URL) by characters as a last resort.

The sum of sentence counts is only an estimate of the count of the chunk text (for a
WordPiece tokenizer it is exact at whitespace joins, for other tokenizers or joins inside
a word it can be off), so every chunk is counted again at the end and, where the real
count is too large, that document is packed again, checking each chunk with the counter.
The promise is: ``counter.count([node.text]) <= chunk_size`` for every node.

Token counts alone do not bound a chunk's length: WordPiece turns any word of more than
100 characters into one ``[UNK]``, so a 50 MB run without spaces counts as a single token.
Every chunk is therefore also at most ``chunk_size * MAX_CHARS_PER_TOKEN`` characters:
a span longer than that is never counted (which would cost the tokenizer memory in
proportion to it) but refined like an over-long sentence, and a word is cut into pieces
that satisfy both limits.

Every chunk's text is ``doc.text[char_start:char_end]`` exactly, so offsets are truthful.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from kvgraph.embed.tokens import TokenCounter
from kvgraph.errors import InvalidInputError
from kvgraph.ingest.context import HEADER_KEY, MAX_HEADER_TOKENS, chunk_header
from kvgraph.schema import Document, Metadata, Node, NodeRelationship
from kvgraph.text import Span, split_clauses, split_sentences, split_words

# A part of the text that is never cut again (a sentence, clause, word or piece of a word).
Unit = tuple[int, int, int]  # start, end, n_tokens
# A piece of text to chunk: the full text and the span of it to cut up.
Region = tuple[str, int, int]

_NON_SPACE = re.compile(r"\S")

# The most characters a chunk may hold per token of chunk_size. English runs at 4-5 characters
# per token and code or URLs at 2-3; 16 leaves room for any real text and stops runaway chunks.
MAX_CHARS_PER_TOKEN = 16


class Chunk(NamedTuple):
    """A chunk's span in its text and its real token count."""

    start: int
    end: int
    n_tokens: int


class SpanCounter:
    """Counts spans of texts with a TokenCounter, remembering each span's count.

    Keys use ``id(text)``, which is only safe while the texts stay alive: make one per
    splitting call (HierarchicalSplitter shares one across its levels, which then count
    each sentence once instead of once per level).
    """

    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter
        self._memo: dict[tuple[int, int, int], int] = {}

    def count(self, spans: Sequence[Region]) -> list[int]:
        keys = [(id(text), start, end) for text, start, end in spans]
        todo: dict[tuple[int, int, int], str] = {}
        for key, (text, start, end) in zip(keys, spans):
            if key not in self._memo and key not in todo:
                todo[key] = text[start:end]
        if todo:
            self._memo.update(zip(todo, self.counter.count(list(todo.values()))))
        return [self._memo[key] for key in keys]


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return value


def validate_sizes(counter: TokenCounter, chunk_size: int, chunk_overlap: int, enforce_max_tokens: bool) -> None:
    """Check chunk size and overlap; raise InvalidInputError saying what to change."""
    _check_int("chunk_size", chunk_size)
    _check_int("chunk_overlap", chunk_overlap)
    if chunk_size <= 0:
        raise InvalidInputError(f"chunk_size must be > 0 tokens, got {chunk_size}")
    if not 0 <= chunk_overlap < chunk_size:
        raise InvalidInputError(
            f"chunk_overlap must be >= 0 and smaller than chunk_size ({chunk_size}), got {chunk_overlap}"
        )
    max_tokens = getattr(counter, "max_tokens", None)
    if enforce_max_tokens and max_tokens is not None and chunk_size + 2 > max_tokens:
        raise InvalidInputError(
            f"chunk_size {chunk_size} does not fit the embedding model's window of {max_tokens} tokens "
            f"(2 of them go to [CLS]/[SEP]); use chunk_size <= {max_tokens - 2}"
        )


def chunk_id(*parts: str) -> str:
    """A deterministic node id: the first 32 hex digits of sha256 over the parts."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        # Length-prefix each part so that ("ab", "c") and ("a", "bc") differ.
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


def _pack(
    units: Sequence[Unit],
    size: int,
    overlap: int,
    fits: Callable[[int, int], int | None] | None,
    max_chars: int | None = None,
) -> list[Chunk]:
    """Greedily pack units into chunks; consecutive chunks share whole trailing units.

    A chunk also spans at most ``max_chars`` characters (a single unit always fits: units
    are made no longer than that).

    ``fits(i, j)`` (when given) returns the real token count of units ``i..j-1`` joined, or
    None when it exceeds ``size``; the chunk then gives up units from its end, or overlap
    units from its start once only one new unit is left. A single unit always fits: its
    own count was checked when it was made.
    """
    chunks: list[Chunk] = []
    i, n = 0, len(units)
    chars = max_chars if max_chars is not None else 1 << 62
    prev_j = 0  # the first unit not in the previous chunk
    while i < n:
        total, j = 0, i
        while j < n and (j == i or (total + units[j][2] <= size and units[j][1] - units[i][0] <= chars)):
            total += units[j][2]
            j += 1
        if fits is not None:
            while (checked := fits(i, j)) is None and j - i > 1:
                if j - 1 > prev_j:
                    j -= 1
                else:  # only one new unit left: give up overlap rather than repeat old text
                    i += 1
            # One unit alone always fits: its count was checked when it was made.
            total = units[i][2] if checked is None else checked
        chunks.append(Chunk(units[i][0], units[j - 1][1], total))
        if j >= n:
            break
        prev_j = j
        # Overlap: the longest run of whole trailing units within `overlap` tokens, leaving
        # room for the next unit so that every chunk makes progress.
        k, shared = j, 0
        while (
            k - 1 > i
            and shared + units[k - 1][2] <= overlap
            and shared + units[k - 1][2] + units[j][2] <= size
            and units[j][1] - units[k - 1][0] <= chars
        ):
            shared += units[k - 1][2]
            k -= 1
        i = k
    return chunks


class SentenceSplitter:
    """Split documents into chunks of whole sentences, at most ``chunk_size`` tokens each.

    ``chunk_overlap`` tokens' worth of whole trailing sentences of a chunk are repeated at
    the start of the next (none when the last sentence alone is longer than that).
    ``enforce_max_tokens=False`` skips the check against the model window, for chunks that
    are not embedded (parents in ``HierarchicalSplitter``).
    """

    def __init__(
        self,
        counter: TokenCounter,
        chunk_size: int = 256,
        chunk_overlap: int = 32,
        *,
        enforce_max_tokens: bool = True,
        context_headers: bool = False,
        min_section_chars: int = 0,
    ) -> None:
        validate_sizes(counter, chunk_size, chunk_overlap, enforce_max_tokens)
        self.counter = counter
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.max_chars = chunk_size * MAX_CHARS_PER_TOKEN
        self.enforce_max_tokens = enforce_max_tokens
        # Contextual chunk headers (kvgraph.ingest.context): each chunk carries its document's
        # "title > heading path" in metadata, embedded with it; its tokens come out of chunk_size.
        self.context_headers = context_headers
        # Markdown sections shorter than this are joined to a neighbour before chunking (0: never;
        # kvgraph.ingest.loaders.markdown.merge_small_sections).
        self.min_section_chars = _check_int("min_section_chars", min_section_chars)
        self._narrower: dict[int, SentenceSplitter] = {}

    # -- public API ---------------------------------------------------------------------

    def split(self, doc: Document) -> list[Node]:
        """Split one document into nodes linked source/previous/next. Blank documents give []."""
        return self.split_many([doc])

    def split_many(self, docs: Iterable[Document]) -> list[Node]:
        """Split several documents, counting tokens for all of them in shared batches."""
        docs = list(docs)
        if self.min_section_chars > 0:
            from kvgraph.ingest.loaders.markdown import merge_small_sections

            docs = merge_small_sections(docs, self.min_section_chars)
        if self.context_headers:
            return self._split_with_headers(docs)
        all_chunks = self.chunk_regions([(doc.text, 0, len(doc.text)) for doc in docs])
        nodes: list[Node] = []
        for doc, chunks in zip(docs, all_chunks):
            nodes.extend(self.make_nodes(doc, chunks))
        return nodes

    def _split_with_headers(self, docs: list[Document]) -> list[Node]:
        """Split each document into chunks of ``chunk_size`` minus its header's tokens, headers in metadata.

        Documents are grouped by the room their header takes (rounded up to 8 tokens), so each
        group is packed in one batch; the node ids hash the header too, so turning headers on or
        off gives new ids and every chunk is embedded again.
        """
        budget = min(MAX_HEADER_TOKENS, self.chunk_size // 4)
        headers = _fit_headers([chunk_header(doc.metadata) for doc in docs], self.counter, budget)
        groups: dict[int, list[int]] = {}
        for i, (_, n) in enumerate(headers):
            reserve = 0 if n == 0 else min(budget, -(-(n + 2) // 8) * 8)  # +2: the blank line between
            groups.setdefault(reserve, []).append(i)
        per_doc: dict[int, list[Node]] = {}
        for reserve, members in groups.items():
            splitter = self._narrow(self.chunk_size - reserve)
            regions = [(docs[i].text, 0, len(docs[i].text)) for i in members]
            for i, chunks in zip(members, splitter.chunk_regions(regions)):
                header = headers[i][0]
                extra: Metadata | None = {HEADER_KEY: header} if header else None
                per_doc[i] = self.make_nodes(docs[i], chunks, salt="h:" + header if header else "", extra=extra)
        return [node for i in range(len(docs)) for node in per_doc[i]]

    def _narrow(self, size: int) -> SentenceSplitter:
        if size == self.chunk_size:
            return self
        narrow = self._narrower.get(size)
        if narrow is None:
            overlap = min(self.chunk_overlap, size // 2)
            narrow = SentenceSplitter(self.counter, size, overlap, enforce_max_tokens=self.enforce_max_tokens)
            self._narrower[size] = narrow
        return narrow

    def make_nodes(
        self, doc: Document, chunks: Sequence[Chunk], salt: str = "", extra: Metadata | None = None
    ) -> list[Node]:
        """Nodes for ``chunks`` of ``doc``, linked source/previous/next.

        The id hashes the document id, ``salt``, the chunk text and how many earlier chunks
        of this call had the same text. It leaves out the chunk's position, so an edit
        changes the ids of the chunks whose text changed and not those of the chunks after.
        """
        nodes: list[Node] = []
        seen: dict[str, int] = {}
        for index, chunk in enumerate(chunks):
            text = doc.text[chunk.start : chunk.end]
            dup = seen.get(text, 0)
            seen[text] = dup + 1
            metadata = dict(doc.metadata)
            metadata.update(extra or {})
            metadata.update(char_start=chunk.start, char_end=chunk.end, chunk_index=index, n_tokens=chunk.n_tokens)
            nodes.append(
                Node(
                    id=chunk_id(doc.id, salt, text, str(dup)),
                    text=text,
                    metadata=metadata,
                    ref_doc_id=doc.id,
                    relationships={NodeRelationship.SOURCE.value: doc.id},
                )
            )
        for prev, nxt in itertools.pairwise(nodes):
            prev.relationships[NodeRelationship.NEXT.value] = nxt.id
            nxt.relationships[NodeRelationship.PREVIOUS.value] = prev.id
        return nodes

    def chunk_regions(self, regions: Sequence[Region], counts: SpanCounter | None = None) -> list[list[Chunk]]:
        """Chunk spans (offsets into each region's text) for each ``(text, start, end)`` region."""
        counts = counts or SpanCounter(self.counter)
        all_units = self._units(regions, counts)
        packed = [_pack(units, self.chunk_size, self.chunk_overlap, None, self.max_chars) for units in all_units]
        # Count every chunk for real, in one batch; repack the regions where the estimate was wrong.
        real = iter(counts.count([(regions[r][0], c.start, c.end) for r, chunks in enumerate(packed) for c in chunks]))
        result: list[list[Chunk]] = []
        for (text, _, _), units, chunks in zip(regions, all_units, packed):
            checked = [next(real) for _ in chunks]
            if all(n <= self.chunk_size for n in checked):
                result.append([c._replace(n_tokens=n) for c, n in zip(chunks, checked)])
            else:
                fits = self._fits(text, units, counts)
                result.append(_pack(units, self.chunk_size, self.chunk_overlap, fits, self.max_chars))
        return result

    # -- internals ----------------------------------------------------------------------

    def _fits(self, text: str, units: Sequence[Unit], counts: SpanCounter) -> Callable[[int, int], int | None]:
        def fits(i: int, j: int) -> int | None:
            n = counts.count([(text, units[i][0], units[j - 1][1])])[0]
            return n if n <= self.chunk_size else None

        return fits

    def _units(self, regions: Sequence[Region], counts: SpanCounter) -> list[list[Unit]]:
        """Each region's units: sentences, refined where a sentence is over ``chunk_size``."""
        spans: list[tuple[int, int, int]] = []  # region index, start, end
        for r, (text, start, end) in enumerate(regions):
            if _NON_SPACE.search(text, start, end) is None:
                continue
            sentences = split_sentences(text[start:end]) if (start, end) != (0, len(text)) else split_sentences(text)
            spans.extend((r, s + start, e + start) for s, e in sentences)
        entries = [(r, s, e, n) for (r, s, e), n in zip(spans, self._count(regions, spans, counts))]
        # Too long: cut at clause punctuation, then between words (each stage one batch).
        for refine in (split_clauses, split_words):
            if all(n <= self.chunk_size for *_, n in entries):
                break
            entries = self._refine(regions, entries, refine, counts)
        out: list[list[Unit]] = [[] for _ in regions]
        for r, s, e, n in entries:
            if n <= self.chunk_size:
                out[r].append((s, e, n))
            else:  # one word longer than chunk_size
                out[r].extend(self._split_chars(regions[r][0], s, e, counts))
        return out

    def _refine(
        self,
        regions: Sequence[Region],
        entries: list[tuple[int, int, int, int]],
        refine: Callable[[str, int, int], list[Span]],
        counts: SpanCounter,
    ) -> list[tuple[int, int, int, int]]:
        out: list[tuple[int, int, int, int]] = []
        todo: list[int] = []  # positions in `out` whose count is still to be computed
        for r, s, e, n in entries:
            parts = refine(regions[r][0], s, e) if n > self.chunk_size else [(s, e)]
            if len(parts) == 1 and parts[0] == (s, e):
                out.append((r, s, e, n))
                continue
            for ps, pe in parts:
                todo.append(len(out))
                out.append((r, ps, pe, -1))
        new_counts = self._count(regions, [(out[k][0], out[k][1], out[k][2]) for k in todo], counts)
        for k, n in zip(todo, new_counts):
            r, s, e, _ = out[k]
            out[k] = (r, s, e, n)
        return out

    def _count(
        self, regions: Sequence[Region], spans: Sequence[tuple[int, int, int]], counts: SpanCounter
    ) -> list[int]:
        """Token counts of ``(region, start, end)`` spans; spans over ``max_chars`` are not counted
        but reported as ``chunk_size + 1`` (too long either way: they are refined)."""
        short = [k for k, (_, s, e) in enumerate(spans) if e - s <= self.max_chars]
        out = [self.chunk_size + 1] * len(spans)
        for k, n in zip(short, counts.count([(regions[spans[k][0]][0], spans[k][1], spans[k][2]) for k in short])):
            out[k] = n
        return out

    def _split_chars(self, text: str, start: int, end: int, counts: SpanCounter) -> list[Unit]:
        """Cut one over-long word into the longest pieces that fit (exponential, then binary search).

        Counts need not grow with length (WordPiece turns a word over 100 characters into a
        single [UNK]), so the search only keeps the invariant "prefix lo fits, prefix hi
        does not", and a piece never exceeds ``max_chars`` characters whatever its count. A
        single character that alone exceeds ``chunk_size`` is kept as it is.
        """
        size = self.chunk_size

        def count(a: int, b: int) -> int:
            return counts.count([(text, a, b)])[0]

        units: list[Unit] = []
        pos = start
        while pos < end:
            limit = min(end, pos + self.max_chars)  # no piece extends past this
            lo, lo_n = pos + 1, count(pos, pos + 1)
            hi = None
            width = min(4 * size, self.max_chars)  # a guess of the characters per chunk; the search corrects it
            while hi is None:
                probe = min(limit, pos + width)
                n = count(pos, probe)
                if n > size:
                    hi = probe
                elif probe == limit:
                    lo, lo_n = limit, n
                    break
                else:
                    lo, lo_n, width = probe, n, width * 2
            while hi is not None and hi - lo > 1:
                mid = (lo + hi) // 2
                n = count(pos, mid)
                if n <= size:
                    lo, lo_n = mid, n
                else:
                    hi = mid
            units.append((pos, lo, lo_n))
            pos = lo
        return units


def _fit_headers(headers: Sequence[str], counter: TokenCounter, budget: int) -> list[tuple[str, int]]:
    """(header, its token count) per header, each cut to its first words that fit ``budget`` tokens."""
    distinct = [h for h in dict.fromkeys(headers) if h]
    counts = dict(zip(distinct, counter.count(distinct))) if distinct else {}
    fitted: dict[str, tuple[str, int]] = {"": ("", 0)}
    for header in distinct:
        n = counts[header]
        words = header.split()
        cut = header
        while n > budget and len(words) > 1:  # rare: a deep or long heading path
            words = words[: max(1, len(words) * budget // max(n, 1))] if n > 2 * budget else words[:-1]
            cut = " ".join(words)
            n = counter.count([cut])[0]
        fitted[header] = (cut, n) if n <= budget else ("", 0)
    return [fitted[h] for h in headers]
