# ruff: noqa: RUF001  (the texts are in other scripts on purpose)
"""Hand-written sentences in several languages, with their boundaries, for the sentence splitter
and the encoding detector (tests/ingest/test_multilingual.py, test_encodings.py).

Each text is its sentences joined by the language's separator (a space; nothing in Chinese and
Japanese), so the expected split is the list itself. The texts are written for these tests, with the
cases that trip splitters: abbreviations, ordinals, initials, quotes, inverted question marks,
decimals, and terminators that need no space after them.
"""

from __future__ import annotations

SENTENCES: dict[str, list[str]] = {
    "en": [
        "Dr. Smith arrived at 3 p.m. on Monday.",
        "The results, e.g. Fig. 2 and Table 3, were clear.",
        "J. R. R. Tolkien wrote it in 1937.",
        "Was it worth 3.5 million dollars?",
        "Yes!",
        "Touvron et al. (2023) agree.",
    ],
    "de": [
        "Am 3. Oktober 1990 wurde Deutschland wiedervereinigt.",
        "Dr. Müller kam um 14 Uhr, d. h. eine Stunde zu spät.",
        "Das ist z. B. im 19. Jahrhundert passiert.",
        "Die Firma hat ca. 500 Mitarbeiter und liegt in der Hauptstr. 5 in Köln.",
        "Warum hat niemand gefragt?",
        "Siehe dazu Abb. 3 und Kap. 4 des Berichts.",
        "Prof. Dr. Schmidt hält den Vortrag am 5. Mai.",
        "Es kostet 3,50 Euro.",
    ],
    "fr": [
        "M. Dupont est arrivé hier soir.",
        "Qu'est-ce que c'est ?",
        "« Bonjour ! » dit-elle en souriant.",
        "Il a lu le chap. 3 du livre.",
        "C'est très bien !",
        "Nous partirons le 14 juillet.",
    ],
    "es": [
        "¿Dónde está la estación de tren?",
        "¡Qué día tan bonito!",
        "El Sr. García llegó tarde a la reunión.",
        "La Dra. López trabaja en el hospital desde 2010.",
        "Tiene aprox. 30 años.",
    ],
    "ru": [
        "Привет!",
        "Как дела?",
        "А. С. Пушкин родился в Москве в 1799 году.",
        "Он сказал: «Я приду завтра».",
        "Потом он ушёл, т. е. исчез без следа.",
    ],
    "zh": [
        "我们今天去公园散步。",
        "天气很好！",
        "你想一起来吗？",
        "他说：“我明天再来。”",
        "这本书的价格是3.5元。",
        "然后他就走了。",
    ],
    "ja": [
        "吾輩は猫である。",
        "名前はまだ無い。",
        "どこで生れたかとんと見当がつかぬ。",
        "「こんにちは」と彼は言った。",
        "本当ですか？",
        "はい、そうです！",
    ],
    "ko": [
        "안녕하세요.",
        "오늘 날씨가 정말 좋네요.",
        "공원에 같이 갈까요?",
        "네, 좋아요!",
    ],
    "hi": [
        "मैं कल दिल्ली जा रहा हूँ।",
        "क्या तुम मेरे साथ चलोगे?",
        "वहाँ बहुत भीड़ होगी।",
    ],
    "ar": [
        "مرحبا بك في المدينة.",
        "كيف حالك اليوم؟",
        "أنا بخير، شكرا لك.",
    ],
}

JOINERS: dict[str, str] = {"zh": "", "ja": ""}


def text_of(lang: str) -> str:
    """The sentences of ``lang`` as one paragraph."""
    return JOINERS.get(lang, " ").join(SENTENCES[lang])


# Paragraphs for the encoding detector, each with the legacy encodings such files come in.
PARAGRAPHS: dict[str, tuple[str, list[str]]] = {
    "de": (
        "Größere Äpfel schmecken süß. Der Bär läuft über die Straße „schnell“ – weiß man’s? "
        "Übermäßig viel Öl ist ungesund, sagte die Ärztin aus Düsseldorf.",
        ["cp1252"],
    ),
    "fr": (
        "L'été dernier, nous sommes allés à la plage. C'était très agréable, n'est-ce pas ? "
        "Où êtes-vous né ? À Besançon, près de la frontière.",
        ["cp1252", "latin-1"],
    ),
    "es": ("El niño comió una manzana. ¿Dónde está la estación? ¡Qué señal más pequeña!", ["cp1252", "latin-1"]),
    "ru": ("Привет, как дела? Сегодня хорошая погода. Мы пойдём гулять в парк у реки.", ["cp1251", "koi8-r"]),
    "el": ("Καλημέρα σας. Πώς είστε σήμερα; Ο καιρός είναι πολύ καλός στην Αθήνα.", ["cp1253"]),
    "ja": (
        "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗い所で泣いていた。",
        ["shift_jis", "euc_jp"],
    ),
    "zh": ("我们今天去公园散步。天气很好！你想一起来吗？这本书非常有意思，我已经看了两遍。", ["gbk"]),
    "zh-tw": ("我們今天去公園散步。天氣很好！你想一起來嗎？這本書非常有意思。", ["big5"]),
    "ko": ("안녕하세요. 오늘 날씨가 정말 좋네요. 공원에 같이 갈까요? 저는 커피를 마시고 싶어요.", ["euc_kr"]),
}
