"""Heuristic quality rules: Gopher (Rae et al. 2021, appendix A.1.1) plus FineWeb/C4 line rules.

Each rule has its own reason, so the rejects say which one fired. Words are split on whitespace,
except Chinese/Japanese ideographs and kana, which count one word each (those scripts use no
spaces). The mean-word-length bounds were set for alphabetic text and are skipped for
ideographic/Hangul text; the stop-word rule is English-only and runs when the language step
found ``en``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from lmforge.clean.config import QualityConfig
from lmforge.clean.document import Document

# Gopher: "at least two of the following English stop words: the, be, to, of, and, that, have, with".
STOP_WORDS = frozenset(("the", "be", "to", "of", "and", "that", "have", "with"))
BULLETS = ("•", "●", "○", "■", "□", "▪", "▫", "–", "-", "*", "·", "‣", "⁃", "◦")
ELLIPSES = ("...", "…")
# FineWeb ends a line with . ! ? or a quote; we also accept : ; (lines that introduce a list or code)
# and the CJK full stops.
END_PUNCT = (".", "!", "?", '"', "'", "”", "’", ":", ";", "。", "！", "？", "」", "』")
_CJK_WORD = r"[\p{Han}\p{Hiragana}\p{Katakana}]"


def split_words(text: str) -> list[str]:
    """Whitespace words, with each CJK ideograph or kana a word of its own.

    >>> split_words("Hello, world! 你好 안녕하세요")
    ['Hello,', 'world!', '你', '好', '안녕하세요']
    """
    return _word_re().findall(text)


@lru_cache(maxsize=1)
def _word_re():
    import regex  # \p{Han} and friends; the stdlib re has no Unicode script classes

    return regex.compile(rf"{_CJK_WORD}|(?:(?!{_CJK_WORD})\S)+")


def _is_wide_script(text: str) -> bool:
    """True when most letters are Han, kana or Hangul (no alphabet-like word lengths)."""
    letters = [ch for ch in text[:5000] if ch.isalpha()]
    wide = sum(1 for ch in letters if "\u1100" <= ch <= "\u11ff" or "\u3040" <= ch <= "\u30ff"
               or "\u3400" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uf900" <= ch <= "\ufaff")
    return bool(letters) and wide / len(letters) > 0.5


@dataclass
class GopherQualityFilter:
    """Gopher quality and repetition rules, plus the FineWeb/C4 punctuated-lines rule.

    Defaults are the papers' numbers: 50..100,000 words, mean word length 3..10 characters,
    symbol (#, ...) to word ratio <= 0.1, <= 90% of lines starting with a bullet, <= 30% ending
    with an ellipsis, >= 80% of words with a letter, >= 2 English stop words (Gopher); >= 12% of
    lines ending in punctuation (FineWeb); <= 30% duplicated lines and <= 20% of characters in
    duplicated lines (Gopher repetition rules).
    """

    thresholds: QualityConfig = field(default_factory=QualityConfig)

    name = "quality"

    def filter(self, doc: Document):
        words = split_words(doc.text)
        lines = [ln.strip() for ln in doc.text.splitlines() if ln.strip()]
        for rule in (self._word_count, self._mean_word_length, self._symbols, self._alpha_words,
                     self._stop_words, self._bullets_and_ellipses, self._punctuated_lines, self._duplicate_lines):
            failed = rule(doc, words, lines)
            if failed:
                return (False, *failed)
        return True

    def _word_count(self, doc, words, lines):
        if len(words) < self.thresholds.min_words:
            return "too_few_words", str(len(words))
        if len(words) > self.thresholds.max_words:
            return "too_many_words", str(len(words))

    def _mean_word_length(self, doc, words, lines):
        if _is_wide_script(doc.text):
            return None
        mean = sum(map(len, words)) / len(words)
        if not self.thresholds.min_mean_word_length <= mean <= self.thresholds.max_mean_word_length:
            return "mean_word_length", f"{mean:.2f}"

    def _symbols(self, doc, words, lines):
        ratio = (doc.text.count("#") + sum(doc.text.count(e) for e in ELLIPSES)) / len(words)
        if ratio > self.thresholds.max_symbol_word_ratio:
            return "symbol_word_ratio", f"{ratio:.3f}"

    def _alpha_words(self, doc, words, lines):
        ratio = sum(1 for w in words if any(ch.isalpha() for ch in w)) / len(words)
        if ratio < self.thresholds.min_alpha_words_ratio:
            return "alpha_words_ratio", f"{ratio:.3f}"

    def _stop_words(self, doc, words, lines):
        if doc.language != "en":
            return None
        found = len(STOP_WORDS & {w.lower().strip(".,;:!?\"'()") for w in words})
        if found < self.thresholds.min_stop_words:
            return "stop_words", str(found)

    def _bullets_and_ellipses(self, doc, words, lines):
        if not lines:
            return None
        bullets = sum(1 for ln in lines if ln.startswith(BULLETS)) / len(lines)
        if bullets > self.thresholds.max_bullet_lines_ratio:
            return "bullet_lines", f"{bullets:.3f}"
        ellipses = sum(1 for ln in lines if ln.endswith(ELLIPSES)) / len(lines)
        if ellipses > self.thresholds.max_ellipsis_lines_ratio:
            return "ellipsis_lines", f"{ellipses:.3f}"

    def _punctuated_lines(self, doc, words, lines):
        ratio = sum(1 for ln in lines if ln.endswith(END_PUNCT)) / max(len(lines), 1)
        if ratio < self.thresholds.min_punct_lines_ratio:
            return "punctuated_lines", f"{ratio:.3f}"

    def _duplicate_lines(self, doc, words, lines):
        counts = Counter(lines)
        dup_lines = sum(n - 1 for n in counts.values() if n > 1)
        dup_chars = sum(len(ln) * (n - 1) for ln, n in counts.items() if n > 1)
        if lines and dup_lines / len(lines) > self.thresholds.max_duplicate_lines_ratio:
            return "duplicate_lines", f"{dup_lines / len(lines):.3f}"
        total = sum(map(len, lines))
        if total and dup_chars / total > self.thresholds.max_duplicate_line_chars_ratio:
            return "duplicate_line_chars", f"{dup_chars / total:.3f}"
