"""Sentence boundaries by guarded regular expressions, in English and beyond.

``split_sentences`` returns ``(start, end)`` character spans into the text. Spans never
include the whitespace between sentences, and every non-whitespace character of the text
lies in exactly one span.

Boundaries come from three kinds of cut:

* hard cuts at blank lines, at line breaks before something that starts a block (a list
  item, a heading, a table row, a quote) and after heading lines;
* sentence cuts after ``.``, ``?``, ``!`` or ``…`` (or another script's terminator: the
  Devanagari danda, the Arabic question mark, the Urdu, Armenian, Ethiopic and Myanmar full
  stops, the full-width exclamation and question marks), plus closing quotes/brackets, followed
  by whitespace and then an uppercase letter, a letter of a script without case (Arabic, Hangul,
  Devanagari, CJK...), a digit, an opening quote or bracket (``¿ ¡ „ «`` too). A plain period
  is then checked against abbreviations ("Dr.", "Fig. 2", "et al.", "e.g.", "Sr.", "z. B.",
  "Abb. 3"), single initials ("J. R. R. Tolkien", in any script), list numbers at the start of
  a line ("1. Introduction") and German ordinals before a month or century ("am 3. Oktober",
  "im 19. Jahrhundert");
* cuts after the CJK terminators (the ideographic full stop ``。`` and the full-width ``!`` and
  ``?``, with closing quotes such as ``”」』``), which need no space after them: Chinese and
  Japanese write sentences without one.

Decimals, version numbers, URLs and e-mail addresses need no special case: their periods
are not followed by whitespace, so they are never candidates. The work is a few
``finditer`` passes in C plus a little Python per candidate, not per character.
"""

from __future__ import annotations

import re

Span = tuple[int, int]

# Closing quotes and brackets that may follow a terminator: ASCII, typographic (the German closing
# quotes are \u201c \u2018), guillemets, and the CJK corner, book and full-width brackets.
_CLOSERS = "\"'\u201d\u2019\u201c\u2018\u00bb\u203a)\\]\u300d\u300f\u300b\u3009\u3011\u3015\uff09\uff63"
# A candidate sentence end: terminators, optional closing quotes/brackets, then whitespace.
# (\u2026 is the ellipsis; the others are the terminators of other scripts, see the module docstring.)
_TERMINATOR = re.compile(
    f"([.?!\u2026\u0589\u061f\u06d4\u0964\u0965\u1362\u104b\u203c\u2047-\u2049\u3002\uff01\uff1f]+)[{_CLOSERS}]*\\s+"
)
# CJK terminators end a sentence whatever follows; so do ASCII ! and ? directly before kana or a
# CJK ideograph ("好!你").
_CJK_END = re.compile(f"[\u3002\uff61\uff01\uff1f]+[{_CLOSERS}]*|[!?]+(?=[\u3040-\u30ff\u3400-\u9fff])")

# Characters (besides uppercase letters, letters of caseless scripts and digits) that may start a
# sentence: quotes, brackets, Spanish inverted marks, the CJK opening brackets.
_OPENERS = frozenset("\"'\u201c\u2018\u201e\u201a\u00ab\u2039([{\u00bf\u00a1\u300c\u300e\u300a\u3008\u3010\uff08")

# A blank line (possibly with spaces, or \r from CRLF files) ends a paragraph.
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n")

# A line break before something that starts a block of its own: bullets, numbered items
# ("1.", "2.3)", "IV.", "(a)"), headings, table rows, block quotes, code fences and rules.
_BLOCK_START = re.compile(
    r"\n(?=[ \t]*(?:"
    r"[-*+•◦▪‣][ \t]"
    r"|\d{1,3}(?:\.\d{1,3})*[.)][ \t]"
    r"|[IVX]{1,5}\.[ \t]"
    r"|\(?[a-zA-Z0-9]{1,3}\)[ \t]"
    r"|#{1,6}(?:[ \t]|$)"
    r"|[|>]"
    r"|```|~~~|---|\*\*\*|___|==="
    r"))",
    re.MULTILINE,
)

# Lines that are a block of their own, whatever follows them: Markdown headings, table
# rows and horizontal rules (also page separators such as "---").
_OWN_LINE = re.compile(
    r"^[ \t]*(?:#{1,6}(?:[ \t][^\n]*)?|\|[^\n]*|(?:-{3,}|\*{3,}|_{3,}|={3,})[ \t]*)$",
    re.MULTILINE,
)

# Abbreviations after which a period never ends a sentence. Titles are case-sensitive
# ("Ms." is a title, "5 ms." is milliseconds); the others are compared in lowercase.
_TITLES = frozenset(
    {"Dr", "Mr", "Mrs", "Ms", "Prof", "St", "Mt", "Messrs", "Rev", "Gen", "Col", "Capt", "Lt", "Sgt", "Gov", "Sen"}
    | {"Sr", "Sra", "Srta", "Dra", "Mme", "Mlle", "Hr", "Hrn", "Fr"}  # Spanish, French, German
)
_NEVER_FINAL = frozenset(
    {
        "vs", "v", "al", "cf", "approx", "ca", "viz", "resp", "incl", "esp",
        "fig", "figs", "eq", "eqs", "eqn", "eqns", "sec", "secs", "sect", "tab", "tabs",
        # German, Spanish, Russian words that are always followed by more of the sentence
        "vgl", "bzw", "ggf", "evtl", "inkl", "sog", "bspw", "zzgl", "aprox", "ул", "им",
    }
)  # fmt: skip
# Abbreviations that precede a number ("No. 5", "pp. 12", "Abb. 3"): no cut only when a digit follows.
_BEFORE_NUMBER = frozenset(
    {"no", "nos", "nr", "p", "pp", "vol", "vols", "ch", "chap", "art", "ref", "refs", "thm", "app", "ex"}
    | {"abb", "kap", "bd", "anm", "pág", "págs", "núm", "cap", "рис", "стр", "табл", "гл"}
)
# German ordinals: "am 3. Oktober", "im 19. Jahrhundert" are not sentence ends. Months that are
# English words too only after a German preposition ("am 3. April", but "for 3. April came").
_GERMAN_ORDINAL_NOUNS = frozenset(
    {"Januar", "Jänner", "Februar", "März", "Mai", "Juni", "Juli", "Oktober", "Dezember", "Jahrhundert", "Jahrtausend"}
)
_SHARED_MONTHS = frozenset({"April", "August", "September", "November"})
_GERMAN_BEFORE_DATE = frozenset(
    {"am", "vom", "zum", "bis", "ab", "seit", "den", "dem", "im", "Am", "Vom", "Ab", "Seit"}
)
# "z. B.", "d. h.", "u. a.": a lone lowercase letter whose period is followed by another letter and period.
_LETTER_DOT = re.compile(r"\w\.", re.UNICODE)
_NEXT_WORD = re.compile(r"\w+")
# Any CJK terminator, kana or ideograph: a single character class, so the check runs at C speed.
_CJK_HINT = re.compile("[\u3002\uff61\uff01\uff1f\u3040-\u30ff\u3400-\u9fff]")
# "e.g", "i.e", "U.S", "Ph.D": letters separated by periods.
_DOTTED = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}")
# What a list marker looks like at the start of a line: "1", "2.3", "IV", "iii", "a".
_LIST_NUMBER = re.compile(r"\d{1,3}(?:\.\d{1,3})*|[IVXLC]{1,6}|[ivx]{1,4}|[A-Za-z]")

_LEADING_OPENERS = "\"'\u201c\u2018\u00ab([{"


def _token_before(text: str, pos: int) -> tuple[str, int]:
    """The whitespace-delimited token ending at ``pos`` and its start (looks back 40 chars at most)."""
    lo = max(0, pos - 40)
    window = text[lo:pos]
    if not window or window[-1].isspace():
        return "", pos
    parts = window.rsplit(None, 1)
    token = parts[-1]
    return token, pos - len(token)


def _at_line_start(text: str, pos: int) -> bool:
    line_start = text.rfind("\n", 0, pos) + 1
    return not text[line_start:pos].strip()


def _german_ordinal(text: str, start: int, token: str, after: int) -> bool:
    """``token`` (digits) before a period, then a German month or century noun at ``after``."""
    if not (token.isdigit() and len(token) <= 2):
        return False
    m = _NEXT_WORD.match(text, after)
    word = m.group() if m else ""
    if word in _GERMAN_ORDINAL_NOUNS:
        return True
    if word in _SHARED_MONTHS:
        before, _ = _token_before(text, start - 1 if start > 0 and text[start - 1] == " " else start)
        return before in _GERMAN_BEFORE_DATE
    return False


def _is_abbreviation(text: str, pos: int, after: int) -> bool:
    """True when the single period at ``pos`` does not end a sentence (the next one would start at ``after``)."""
    raw, start = _token_before(text, pos)
    token = raw.lstrip(_LEADING_OPENERS)
    if not token:
        return False
    next_char = text[after]
    if token in _TITLES:
        return True
    lower = token.lower()
    if lower in _NEVER_FINAL:
        return True
    if lower in _BEFORE_NUMBER and next_char.isdigit():
        return True
    # A single capital letter is an initial ("J. R. R. Tolkien", "A. Smith").
    if len(token) == 1 and token.isupper():
        return True
    if _DOTTED.fullmatch(token):
        return True
    # "z. B.", "d. h.": a lone lowercase letter, then another letter with a period.
    if len(token) == 1 and token.islower() and _LETTER_DOT.match(text, after):
        return True
    # German street names: "Hauptstr. 5".
    if lower.endswith("str") and next_char.isdigit():
        return True
    if _german_ordinal(text, start, token, after):
        return True
    # "1. Introduction" at the start of a line is a list item, not a one-word sentence.
    return _LIST_NUMBER.fullmatch(token) is not None and _at_line_start(text, start)


def _sentence_cuts(text: str) -> list[int]:
    cuts: list[int] = []
    n = len(text)
    for m in _TERMINATOR.finditer(text):
        end = m.end()
        if end >= n:
            break
        nxt = text[end]
        # A sentence starts with a capital, a letter of a script without case, a digit or an opener.
        if not ((nxt.isalpha() and not nxt.islower()) or nxt.isdigit() or nxt in _OPENERS):
            continue
        # Only a lone period can be an abbreviation; "?", "!" and ellipses followed by a
        # capital are taken as sentence ends.
        if m.group(1) == "." and _is_abbreviation(text, m.start(), end):
            continue
        cuts.append(end)
    if not text.isascii() and _CJK_HINT.search(text):  # cheap checks keep text without CJK off this loop
        cuts.extend(m.end() for m in _CJK_END.finditer(text) if m.end() < n)
    return cuts


def _spans_between(text: str, cuts: list[int], start: int, end: int) -> list[Span]:
    """Trimmed, non-empty spans between sorted cut positions within ``[start, end)``."""
    spans: list[Span] = []
    prev = start
    for cut in (*cuts, end):
        if cut <= prev:
            continue
        segment = text[prev:cut]
        stripped = segment.lstrip()
        if stripped:
            s = prev + len(segment) - len(stripped)
            spans.append((s, s + len(stripped.rstrip())))
        prev = cut
    return spans


def split_sentences(text: str) -> list[Span]:
    """Split ``text`` into sentence spans ``(start, end)``; whitespace between sentences is excluded."""
    if not text:
        return []
    cuts = set(_sentence_cuts(text))
    cuts.update(m.start() for m in _PARAGRAPH.finditer(text))
    cuts.update(m.start() for m in _BLOCK_START.finditer(text))
    cuts.update(m.end() for m in _OWN_LINE.finditer(text))
    return _spans_between(text, sorted(cuts), 0, len(text))


# Clause punctuation: , ; : followed by whitespace ("3,000" and "a:b" stay whole), em
# and en dashes anywhere, and a spaced hyphen or double hyphen used as a dash; the CJK comma,
# enumeration comma, semicolon and colon anywhere (no space follows them); the Arabic comma
# and semicolon before whitespace.
_CLAUSE = re.compile(r"[,;:\u060c\u061b](?=\s)|[\u2014\u2013\uff0c\u3001\uff1b\uff1a]|(?<=\s)--?(?=\s)")
_WORD = re.compile(r"\S+")


def split_clauses(text: str, start: int, end: int) -> list[Span]:
    """Split the sentence ``text[start:end]`` after clause punctuation (, ; : em/en dashes, CJK commas).

    The punctuation stays with the clause before it. Returns the trimmed span itself when
    there is nothing to split at.
    """
    cuts = [m.end() for m in _CLAUSE.finditer(text, start, end)]
    return _spans_between(text, cuts, start, end)


def split_words(text: str, start: int, end: int) -> list[Span]:
    """Spans of the whitespace-separated words of ``text[start:end]``."""
    return [m.span() for m in _WORD.finditer(text, start, end)]


# ---------------------------------------------------------------------- text that cannot be encoded

# A Python str can hold lone surrogates (U+D800..U+DFFF): bytes that were not UTF-8, decoded with
# errors="surrogateescape" (file names, command-line arguments), or a broken UTF-16 pair. They
# cannot be encoded to UTF-8, so tokenizers, SQLite and JSON writers refuse them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD; the same object when there is none."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


# ---------------------------------------------------------------------- sentences worth quoting

MIN_ANSWER_WORDS = 4  # a shorter fragment is never a sentence worth quoting on its own
_RULE = re.compile(r"^(?:-{3,}|\*{3,}|_{3,}|={3,})$")
_PAGE_MARK = re.compile(r"^(?:page\s+)?\d+(?:\s*(?:/|of)\s*\d+)?$|^-\s*\d+\s*-$", re.IGNORECASE)
_PARENTHETICAL = re.compile(r"^[(\[].*[)\]][.,;]?$")
_REFERENCE_VENUE = re.compile(
    r"\bIn (?:Proceedings|Advances|Findings|International|Conference|Workshop)\b"
    r"|\barXiv(?: preprint)?\b|\babs/\d|\bdoi\b|\bpages? \d+\s*[-\u2013]\s*\d+|\bvol(?:ume)?\.? \d+, ",
    re.IGNORECASE,
)
_ENDS_WITH_YEAR = re.compile(r"(?:^|[\s,(])(?:19|20)\d\d[a-z]?\)?\.?$")
_CAPTION = re.compile(r"^(?:Figure|Fig\.|Table|Tab\.)\s*[A-Z]?\d+[a-z]?\s*[:.]", re.IGNORECASE)
_SENTENCE_END: tuple[str, ...] = (".", "!", "?", "\u2026", '"', "'", "\u201d", "\u2019", ")", "]")
_SENTENCE_END += ("\u3002", "\uff01", "\uff1f", "\u300d", "\u300f", "\uff09", "\u0964", "\u061f", "\u06d4")


def is_reference_entry(text: str) -> bool:
    """Bibliography entries: author lists, venues ("In Proceedings of", "arXiv preprint"), trailing years."""
    if _REFERENCE_VENUE.search(text) and (_ENDS_WITH_YEAR.search(text) or text.count(",") >= 2):
        return True
    words = text.split()
    if text.count(",") >= 3 and len(words) >= 6:
        # "A. Smith, B. Jones, C. Lee, and D. Kim." - nearly every word capitalised.
        capitalised = sum(1 for w in words if w[:1].isupper() or w in ("and", "et", "al.", "al.,"))
        if capitalised >= 0.8 * len(words):
            return True
    return _ENDS_WITH_YEAR.search(text) is not None and text.count(",") >= 3 and len(words) <= 30


# Chinese and Japanese characters, counted as words at about two characters a word.
_CJK_CHAR = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def word_count(text: str) -> int:
    """Whitespace-separated words, with Chinese and Japanese text (written without spaces) counted
    at two characters a word; the same as ``len(text.split())`` for text without such characters."""
    words = text.split()
    if text.isascii() or not _CJK_HINT.search(text):
        return len(words)
    n = 0
    for word in words:
        cjk = len(_CJK_CHAR.findall(word))
        if not cjk:
            n += 1
            continue
        rest = [w for w in _CJK_CHAR.sub(" ", word).split() if any(c.isalnum() for c in w)]  # "GPT" in "用GPT写"
        n += (cjk + 1) // 2 + len(rest)
    return n


def is_prose(text: str, min_words: int) -> bool:
    """Words rather than numbers, symbols or table debris."""
    if word_count(text) < min_words or "|" in text or text.startswith((">", "```")):
        return False
    if _RULE.match(text) or _PAGE_MARK.match(text) or _PARENTHETICAL.match(text):  # "(Bai et al., 2022a)."
        return False
    non_space = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in non_space) >= 0.6 * len(non_space)


def is_useful_sentence(text: str) -> bool:
    """Whether a whitespace-normalised sentence can stand alone in an answer (see the module docstring)."""
    if not is_prose(text, MIN_ANSWER_WORDS):
        return False
    words = text.split()
    n_words = word_count(text)
    if n_words < 8 and not text.endswith(_SENTENCE_END):  # a label, a contents line "Safety in Pretraining 20"
        return False
    if len(words) <= 7 and all(w[:1].isupper() for w in words if len(w) > 3):  # run-in heading "Carbon Footprint."
        return False
    if text.endswith(":"):  # a lead-in, quoted only together with its list
        return False
    if _CAPTION.match(text) and n_words < 12:  # "Figure 5: Training Loss for Llama 2 models."
        return False
    return not is_reference_entry(text)
