"""Which text encoding a file that is not UTF-8 is in (charset-normalizer), or that it is in none.

Text files are read as UTF-8 unless a BOM says UTF-16/32 (``common.detect_bom``). When a file
without a BOM is not valid UTF-8, this module decides between two stories:

* **It is UTF-8 with bad bytes** (truncated, corrupt, or two encodings pasted together): the
  bytes hold many valid multi-byte UTF-8 sequences next to the few that fail. Guessing a legacy
  encoding would turn every accented letter into mojibake ("GrÃ¶ÃŸe"), so the file is refused
  with the offset of the first bad byte (:func:`looks_like_broken_utf8`).
* **It is in a legacy encoding** (Latin-1, cp1252, Shift-JIS, GBK, cp1251...): charset-normalizer
  ranks the encodings whose decoding reads as language rather than noise (:func:`guess_encoding`).
  When nothing fits the file is refused as before.

charset-normalizer is unsure on short Western texts ("caf\\xe9 au lait" fits a dozen code pages
equally well); between equally plausible candidates the Western one, cp1252 (a superset of
Latin-1's printable characters), wins, because it is by far the most common source of such files.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

__all__ = ["DETECTION_SAMPLE_BYTES", "detection_sample", "guess_encoding", "looks_like_broken_utf8"]

# How much of a big file the detector sees: its start, and the stretch from the first byte that is
# not UTF-8 (a file that is ASCII for 3 MB and Latin-1 after that must show the detector the Latin-1).
DETECTION_SAMPLE_BYTES = 1 << 20
_HEAD_BYTES = DETECTION_SAMPLE_BYTES // 4

# A well-formed multi-byte UTF-8 sequence (no overlongs, no surrogates, at most U+10FFFF).
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
_HIGH_BYTES = re.compile(rb"[\x80-\xff]")

# Legacy CJK text contains valid UTF-8 sequences by chance, about one per two or three stray bytes
# (measured on Shift-JIS, EUC-JP, GBK, Big5 and EUC-KR samples); broken UTF-8 has hundreds per bad byte.
_BROKEN_UTF8_RATIO = 2.0
# charset-normalizer's limit on how noisy a decoding may look (its default is 0.2, which refuses
# dense but real Polish or Czech text; binary data scores far above 0.3).
_MAX_CHAOS = 0.3
# Candidates this close to the least noisy one count as equally plausible.
_TIE = 0.01
_PREFERRED = ("cp1252", "latin_1")
# CJK candidates this close to the least noisy one are compared by how rare their characters are.
_CJK_TIE = 0.1
# CJK ideographs, Hangul syllables and loose Hangul letters (jamo are rare in running text).
_CJK = re.compile("[\u3131-\u318e\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3]")
# (codec, lead bytes of its common level): GB 2312 level 1, JIS X 0208 level 1, Big5 level 1,
# KS X 1001 Hangul.
_COMMON_CJK = (("gb2312", 0xB0, 0xD7), ("shift_jis", 0x88, 0x98), ("big5", 0xA4, 0xC6), ("euc_kr", 0xB0, 0xC8))


def detection_sample(read: Callable[[int, int], bytes], size: int, first_bad: int) -> bytes:
    """What the detector looks at: all of a small file; of a big one its head and the part from ``first_bad``.

    ``read(start, n)`` returns ``n`` bytes of the file from ``start`` (fewer at its end).
    """
    if size <= DETECTION_SAMPLE_BYTES:
        return read(0, size)
    start = max(_HEAD_BYTES, first_bad - 1024)
    return read(0, _HEAD_BYTES) + read(start, DETECTION_SAMPLE_BYTES - _HEAD_BYTES)


def looks_like_broken_utf8(sample: bytes) -> bool:
    """True when ``sample`` (which failed to decode as UTF-8) is mostly valid UTF-8 beyond ASCII."""
    valid = _UTF8_MULTIBYTE.findall(sample)
    if not valid:
        return False
    stray = len(_HIGH_BYTES.findall(sample)) - sum(len(v) for v in valid)
    return len(valid) >= _BROKEN_UTF8_RATIO * max(stray, 1)


def _is_common(char: str) -> bool:
    for codec, low, high in _COMMON_CJK:
        try:
            encoded = char.encode(codec)
        except UnicodeEncodeError:
            continue
        # Two bytes (Python's euc_kr spells rare syllables in 8), the lead byte in the common level.
        if len(encoded) == 2 and low <= encoded[0] <= high:
            return True
    return False


def _rare_characters(text: str) -> int:
    """How many of ``text``'s CJK ideographs and Hangul letters are not among the common ones.

    Decoding Shift-JIS as cp949 (or EUC-JP as Big5...) gives valid but rare characters ("뚡봸궼",
    "抩蟆"); real text is mostly in the first (common) level of GB 2312, JIS X 0208 or Big5, or
    among KS X 1001's Hangul syllables, so the count tells a right CJK decoding from a wrong one
    where charset-normalizer's noise score cannot.
    """
    counts = Counter(_CJK.findall(text))
    return sum(n for char, n in counts.items() if not _is_common(char))


def guess_encoding(sample: bytes) -> str | None:
    """The Python codec name ``sample`` most plausibly is in, or None when no encoding fits.

    Needs charset-normalizer (a core dependency); without it nothing is guessed.
    """
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - a core dependency, missing only from a broken install
        return None
    matches = list(from_bytes(sample, threshold=_MAX_CHAOS))  # charset-normalizer's ranking: noise, then language
    if not matches:
        return None
    least = min(m.chaos for m in matches)
    near = [m for m in matches if m.chaos <= least + _CJK_TIE]
    if len(near) > 1:
        rarity = {m.encoding: _rare_characters(str(m)) for m in near}
        fewest = min(rarity.values())
        near = [m for m in near if rarity[m.encoding] == fewest]
        least = min(m.chaos for m in near)
    best = near[0]
    plausible = [m for m in near if m.chaos <= least + _TIE and m.coherence >= best.coherence - 0.05]
    for preferred in _PREFERRED:
        if any(preferred in m.could_be_from_charset for m in plausible):
            try:
                sample.decode(preferred)
            except UnicodeDecodeError:  # cp1252 leaves five bytes undefined; Latin-1 maps them all
                continue
            return preferred
    return str(best.encoding)
