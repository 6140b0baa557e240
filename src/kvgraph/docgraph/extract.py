"""Offline entity and keyphrase extraction: regular expressions and a stopword list, no model.

The knowledge-vector graph links chunks through the names they share. Without an LLM (and
without spaCy models, which cannot be downloaded offline) the useful signals are surface ones:

- ``name``: runs of capitalised words, allowing a few lowercase connectors inside
  ("University of California", "Joseph de Maistre"); a sentence-initial function word
  ("The", "In", "He") is dropped from the front.
- ``acronym``: all-capital tokens of 2+ letters ("NASA", "U.S.").
- ``title``: short quoted strings ("Hey Jude"), which in encyclopaedic text are work titles.
- ``phrase``: lowercase keyphrases of 2-3 content words between stopwords and punctuation
  (RAKE's candidate rule), optional because they are noisier than names.
- ``year``: four-digit years 1000-2099, optional (they link many unrelated chunks).

Every mention has a canonical key (:func:`entity_key`: case, accents, punctuation, a leading
"the" and a possessive folded away) so "The Beatles'" and "the beatles" are one graph node.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# Function words: they end a keyphrase, and a capitalised one cannot start a name.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "although",
        "am",
        "among",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "either",
        "else",
        "ever",
        "every",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "however",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "least",
        "less",
        "many",
        "may",
        "me",
        "might",
        "more",
        "most",
        "much",
        "must",
        "my",
        "myself",
        "neither",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "one",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "per",
        "rather",
        "same",
        "shall",
        "she",
        "should",
        "since",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "though",
        "through",
        "thus",
        "to",
        "too",
        "two",
        "under",
        "until",
        "up",
        "upon",
        "us",
        "very",
        "via",
        "was",
        "we",
        "were",
        "what",
        "whatever",
        "when",
        "where",
        "whether",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "within",
        "without",
        "would",
        "yet",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)
# Lowercase words allowed inside a capitalised name.
# "and" is left out: "Christopher Nolan and Sathish Kalathil" are two names far more often than one.
CONNECTORS = frozenset(
    ["of", "the", "de", "da", "del", "della", "der", "di", "du", "la", "le", "van", "von", "y", "&", "for", "on"]
)
# Capitalised words that are not names on their own (months, days, sentence openers).
# "Two Dollar Radio" and "One Direction" start with a number word that is part of the name.
NOT_NAMES = (STOPWORDS - {"one", "two"}) | frozenset(
    [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
    ]
)

# Dotted abbreviations ("U.S.") first, so their final dot is not read as a sentence end.
_TOKEN = re.compile(r"(?:[A-Z]\.){2,}|[^\W_](?:[\w'\u2019\-.&]*[^\W_])?|[.,;:!?()\[\]\"“”]", re.UNICODE)
_QUOTED = re.compile(r"[\"“]([^\"“”\n]{2,80})[\"”]")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
_ACRONYM = re.compile(r"^(?:[A-Z]{2,}[0-9]*|(?:[A-Z]\.){2,})$")
_POSSESSIVE = re.compile(r"['\u2019]s?\b")
_NOT_KEY = re.compile(r"[^\w\s&]")
_SPACES = re.compile(r"\s+")


_Emit = Callable[[str, str], None]


@dataclass(frozen=True)
class Mention:
    """One entity found in a text: its canonical ``key``, a display ``name`` and its ``kind``."""

    key: str
    name: str
    kind: str  # name | acronym | title | phrase | year


def entity_key(name: str) -> str:
    """The canonical form of an entity name: the graph node identity.

    Lowercase, accents stripped (NFKD), possessive and punctuation removed, a leading
    "the" dropped, whitespace collapsed. ``entity_key("The Beatles'") == "beatles"``.
    """
    if name.isascii():  # NFKD leaves ASCII as it is and finds no accents: skip the per-character pass
        text = name.lower()
    else:
        text = unicodedata.normalize("NFKD", name)
        text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _POSSESSIVE.sub("", text.strip())
    text = _NOT_KEY.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    if text.startswith("the "):
        text = text[4:]
    return text


def _is_cap(token: str) -> bool:
    return token[:1].isupper() or (token[:1].isdigit() and any(c.isupper() for c in token))


@dataclass
class EntityExtractor:
    """Extract :class:`Mention` s from text with the rules in the module docstring.

    ``phrases`` and ``years`` switch on the noisier kinds; ``max_words`` bounds a name's length
    (longer runs of capitals are usually headlines or lists, not one name).
    """

    phrases: bool = True
    years: bool = False
    max_words: int = 6
    min_chars: int = 2

    def extract(self, text: str) -> list[Mention]:
        """The distinct mentions of ``text`` (first occurrence order), one per canonical key."""
        found: dict[str, Mention] = {}

        def add(name: str, kind: str) -> None:
            key = entity_key(name)
            if len(key) < self.min_chars or key in STOPWORDS or (key.isdigit() and kind != "year"):
                return
            if key not in found:
                found[key] = Mention(key, name.strip(), kind)

        for m in _QUOTED.finditer(text):
            inner = m.group(1).strip()
            if 0 < len(inner.split()) <= 8:
                add(inner, "title")
        tokens = _TOKEN.findall(text)
        self._names(tokens, add)
        if self.phrases:
            self._phrases(tokens, add)
        if self.years:
            for m in _YEAR.finditer(text):
                add(m.group(1), "year")
        return list(found.values())

    def _names(self, tokens: list[str], emit: _Emit) -> None:
        run: list[str] = []

        def flush() -> None:
            while run and run[-1].lower() in CONNECTORS:  # "Bank of" -> "Bank"
                run.pop()
            while run and run[0].lower() in NOT_NAMES:  # "The Beatles" keeps "Beatles" via the key anyway
                run.pop(0)
            if run and len(run) <= self.max_words:
                name = " ".join(run)
                single = len(run) == 1
                kind = "acronym" if single and _ACRONYM.match(run[0]) else "name"
                emit(name, kind)
            run.clear()

        for tok in tokens:
            if (
                _is_cap(tok) or (run and tok.isdigit()) or (run and tok.lower() in CONNECTORS)
            ):  # a number continues a name: "Apollo 11", "BWV 1033"
                run.append(tok)
            else:
                flush()
        flush()

    def _phrases(self, tokens: list[str], emit: _Emit) -> None:
        run: list[str] = []

        def flush() -> None:
            if 2 <= len(run) <= 3:
                emit(" ".join(run), "phrase")
            run.clear()

        for tok in tokens:
            low = tok.lower()
            if tok[:1].isalpha() and not _is_cap(tok) and low not in STOPWORDS and len(low) > 2:
                run.append(low)
            else:
                flush()
        flush()

    def extract_many(self, texts: Iterable[str]) -> list[list[Mention]]:
        return [self.extract(t) for t in texts]
