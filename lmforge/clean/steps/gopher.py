"""Gopher's quality and repetition rules (Rae et al. 2021, appendix A.1.1 and table A1), with the
semantics of datatrove's GopherQualityFilter and GopherRepetitionFilter (0.10.1): the same
splits, counts and denominators, so that the verdicts agree (bench/bench_clean_rules.py).

Differences, on purpose: a threshold of ``false`` switches a rule off (datatrove: None, and also
0); n-grams are compared as word sequences, where datatrove compares the joined strings of the
duplicated n-gram rule ("ab"+"c" equals "a"+"bc" there), here by 64-bit hashes of the word
sequences; words come from lmforge/clean/words.py
and the document's language (datatrove: one language per filter).
"""

from __future__ import annotations

import re
from itertools import accumulate

import numpy as np

from lmforge.clean.steps import Step

_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
BULLETS = ("•", "-")  # datatrove: lines whose lstrip() starts with one of these
ELLIPSES = ("...", "…")


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(items that repeat an earlier one, their characters)."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


class GopherRepetitionStep(Step):
    """Reasons: ``dup_para_frac``, ``dup_para_char_frac``, ``dup_line_frac``, ``dup_line_char_frac``,
    ``top_<n>_gram``, ``duplicated_<n>_n_grams`` (datatrove's names); ``empty``."""

    name = "gopher_repetition"

    def __init__(self, settings=None, words=None):
        from lmforge.clean.config import GopherRepetitionStep as Settings

        super().__init__(settings or Settings(), words)

    def filter(self, doc):
        s, text = self.settings_for(doc.language), doc.text
        if not text:
            return False, "empty"
        paragraphs = _PARAGRAPHS.split(text.strip())
        dup, chars = find_duplicates(paragraphs)
        if _over(dup / len(paragraphs), s.dup_para_frac):
            return False, "dup_para_frac", f"{dup / len(paragraphs):.3f}"
        if _over(chars / len(text), s.dup_para_char_frac):
            return False, "dup_para_char_frac", f"{chars / len(text):.3f}"
        lines = _LINES.split(text)
        dup, chars = find_duplicates(lines)
        if _over(dup / len(lines), s.dup_line_frac):
            return False, "dup_line_frac", f"{dup / len(lines):.3f}"
        if _over(chars / len(text), s.dup_line_char_frac):
            return False, "dup_line_char_frac", f"{chars / len(text):.3f}"
        return self._ngrams(s, self.tokens(doc), len(text))

    def _ngrams(self, s, words: list[str], n_chars: int):
        lengths = [0, *accumulate(map(len, words))]  # characters of words[i:j] = lengths[j] - lengths[i]
        grams = _NGramHashes(words)
        for n in (2, 3, 4):
            limit = getattr(s, f"top_{n}gram_char_frac")
            if limit is False or len(words) < n:
                continue
            top = _top_ngram_chars(grams.of(n), n, lengths)
            if top / n_chars > limit:
                return False, f"top_{n}_gram", f"{top / n_chars:.3f}"
        for n in range(5, 11):
            limit = getattr(s, f"dup_{n}gram_char_frac")
            if limit is False or len(words) < n:
                continue
            dup = _duplicated_ngram_chars(grams.of(n), n, lengths)
            if dup / n_chars > limit:
                return False, f"duplicated_{n}_n_grams", f"{dup / n_chars:.3f}"
        return True


class _NGramHashes:
    """64-bit hashes of a text's word n-grams, one array per n, each made from the last: a
    random 64-bit number per distinct word, h(w1..wn) = h(w1..wn-1) * P + r(wn) modulo 2**64.
    Two different n-grams of one document share a hash with a chance of about (n-grams)^2 / 2^65:
    none in practice (datatrove compares the strings)."""

    P = np.uint64(0x9E3779B97F4A7C15)  # odd (the golden-ratio constant of splitmix64)

    def __init__(self, words: list[str]):
        index: dict[str, int] = {}
        ids = np.fromiter((index.setdefault(w, len(index)) for w in words), dtype=np.int64, count=len(words))
        self.r = np.random.default_rng(0).integers(0, 2**63, size=max(len(index), 1), dtype=np.uint64)[ids]
        self.n, self.h = 1, self.r

    def of(self, n: int) -> np.ndarray:
        with np.errstate(over="ignore"):  # wrapping modulo 2**64 is the point
            while self.n < n:
                self.n += 1
                self.h = self.h[:-1] * self.P + self.r[self.n - 1:]
        return self.h


def _top_ngram_chars(hashes: np.ndarray, n: int, lengths: list[int]) -> int:
    """Characters (words joined by spaces) of the commonest n-gram times its count; the first
    seen wins a tie, as in datatrove (Counter.most_common)."""
    _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    top = counts.max()
    i = int(first[counts == top].min())
    return (lengths[i + n] - lengths[i] + n - 1) * int(top)


def _duplicated_ngram_chars(hashes: np.ndarray, n: int, lengths: list[int]) -> int:
    """Characters (words joined without spaces) of the n-grams that repeat an earlier one,
    scanning left to right and jumping past each repeat (datatrove's find_all_duplicate).

    Only n-grams that occur more than once can repeat, so the scan visits their positions
    alone; a position a jump passed over is not remembered, as in datatrove.
    """
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    positions = np.flatnonzero(counts[inverse] > 1)
    if positions.size == 0:
        return 0
    seen: set = set()
    chars = next_free = 0
    for i, h in zip(positions.tolist(), hashes[positions].tolist()):
        if i < next_free:
            continue
        if h in seen:
            chars += lengths[i + n] - lengths[i]
            next_free = i + n
        else:
            seen.add(h)
            next_free = i + 1
    return chars


class GopherQualityStep(Step):
    """Reasons: ``too_few_words``, ``too_many_words``, ``mean_word_length``, ``hash_word_ratio``,
    ``ellipsis_word_ratio``, ``bullet_lines``, ``ellipsis_lines``, ``alpha_words_ratio``,
    ``stop_words``; ``detail`` holds the measured value."""

    name = "gopher_quality"

    def __init__(self, settings=None, words=None):
        from lmforge.clean.config import GopherQualityStep as Settings

        super().__init__(settings or Settings(), words)

    def filter(self, doc):
        from lmforge.clean.words import STOP_WORDS, is_symbol

        s, text = self.settings_for(doc.language), doc.text
        words = self.tokens(doc)
        if not words:
            return False, "too_few_words", "0"
        real = [w for w in words if w.isalpha() or not is_symbol(w)]  # punctuation marks are not words here
        if s.min_words is not False and len(real) < s.min_words:
            return False, "too_few_words", str(len(real))
        if s.max_words is not False and len(real) > s.max_words:
            return False, "too_many_words", str(len(real))
        if real:
            mean = sum(map(len, real)) / len(real)
            if (s.min_mean_word_length is not False and mean < s.min_mean_word_length) or \
                    _over(mean, s.max_mean_word_length):
                return False, "mean_word_length", f"{mean:.2f}"
        n = len(words)
        if _over(text.count("#") / n, s.max_hash_word_ratio):
            return False, "hash_word_ratio", f"{text.count('#') / n:.3f}"
        ellipses = text.count("...") + text.count("…")
        if _over(ellipses / n, s.max_ellipsis_word_ratio):
            return False, "ellipsis_word_ratio", f"{ellipses / n:.3f}"
        lines = text.splitlines() or [""]
        bullets = sum(1 for ln in lines if ln.lstrip().startswith(BULLETS)) / len(lines)
        if _over(bullets, s.max_bullet_lines_ratio):
            return False, "bullet_lines", f"{bullets:.3f}"
        ends = sum(1 for ln in lines if ln.rstrip().endswith(ELLIPSES)) / len(lines)
        if _over(ends, s.max_ellipsis_lines_ratio):
            return False, "ellipsis_lines", f"{ends:.3f}"
        alpha = sum(1 for w in words if w.isalpha() or any(ch.isalpha() for ch in w)) / n  # most words: the first test
        if s.min_alpha_words_ratio is not False and alpha < s.min_alpha_words_ratio:
            return False, "alpha_words_ratio", f"{alpha:.3f}"
        stop_words = STOP_WORDS.get(doc.language)
        if s.min_stop_words is not False and stop_words is not None:
            found = len(stop_words.intersection(words))  # case-sensitive, as datatrove
            if found < s.min_stop_words:
                return False, "stop_words", str(found)
        return True


def _over(value: float, limit) -> bool:
    """True when ``value`` is above ``limit`` (a maximum; ``False`` is no limit)."""
    return limit is not False and value > limit
