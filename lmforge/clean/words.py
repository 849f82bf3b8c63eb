"""Words and stop words per language, for the rules that count words.

The rules follow datatrove's implementations (FineWeb), which count the tokens of a word
tokenizer: spaCy's for English, so punctuation marks are tokens of their own ("world." is two
tokens) and take part in ratios such as Gopher's alphabetic-words rule. :func:`word_tokens`
gives the same tokens as spaCy's English tokenizer on ordinary prose with one regular
expression (about 20x faster); bench/bench_clean_rules.py measures how often the verdicts agree.

Per language (as FineWeb-2 adapts the rules): Chinese and Japanese have no spaces, so each Han
character or kana is a word (datatrove uses jieba / SudachiPy segmenters: a deliberate
difference, no segmenter needed); Korean separates words (eojeol) by spaces, so the default
split applies, or kiwipiepy's morphemes when ``korean = "kiwi"`` (optional extra, as
datatrove's Korean tokenizer).
"""

from __future__ import annotations

import re
from functools import lru_cache

# Gopher (Rae et al. 2021, appendix A.1.1): "at least two of the following English stop words:
# the, be, to, of, and, that, have, with" (datatrove: gopher_quality_filter.STOP_WORDS).
# Korean: the commonest space-separated words of 204 pages of the Korean LibreOffice help and
# Debian FAQ, less the nouns of their subject matter (auxiliary verbs, conjunctions,
# determiners, bound nouns that any Korean prose uses), plus 그, 것, 등, 있다 of news prose.
# Chinese and Japanese: the commonest single-character function words (particles), which are
# words of their own under the per-character split.
STOP_WORDS = {
    "en": frozenset(("the", "be", "to", "of", "and", "that", "have", "with")),
    "ko": frozenset(("수", "있습니다", "있는", "있다", "및", "또는", "이", "그", "것", "등", "다른", "모든", "대한", "경우",
                     "합니다", "같은", "때", "하는")),
    "zh": frozenset(("的", "了", "是", "在", "和", "有", "不", "这")),
    "ja": frozenset(("の", "に", "は", "を", "が", "で", "て", "と")),
}
PER_CHARACTER = frozenset(("zh", "ja", "yue", "wuu"))
"""Languages split into one word per Han character or kana."""

_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}"
# spaCy's English punctuation rules (spacy/lang/punctuation.py, char_classes.py), in short:
# marks split off a word's ends one at a time ('...' whole, "'s" and "n't" too), and a few
# marks split a word inside (hyphens and : < > = / between letters, ',' between letters,
# '...'). Everything else in a whitespace-separated chunk stays one token (3.14, os.path,
# Py_ssize_t, UTF-8).
_QUOTES = "'\"”“`‘´’‚„»«「」『』（）〔〕【】《》〈〉⟦⟧"
_PUNCT = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"
_CURRENCY = "$£€¥฿₽₴₩₹"
_PREFIX = f"[{re.escape(_PUNCT + _QUOTES + _CURRENCY)}§%=—–+]"
_SUFFIX = f"[{re.escape(_PUNCT + _QUOTES)}—–%°]"
_CONTRACTION = r"(?:['’][sSmMdD]|['’](?:re|ve|ll|RE|VE|LL)|[nN]['’][tT])"
_INFIX = (r"\.{2,}|…|(?<=[\p{Ll}'\"])\.(?=[\p{Lu}'\"])"
          r"|(?<=[\p{L}0-9])(?:-|–|—|--|---|~)(?=\p{L})"
          r"|(?<=[\p{L}0-9])[:<>=/](?=\p{L})"
          r"|(?<=\p{L}),(?=\p{L})"
          r"|(?<=[0-9])[+\-*^](?=[0-9-])")

_SPECIAL = {"cannot": ("can", "not"), "Cannot": ("Can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"),
            "and/or": ("and/or",), "id": ("i", "d"), "Id": ("I", "d"), "im": ("i", "m"), "Im": ("I", "m"),
            "ive": ("i", "ve"), "dont": ("do", "nt"), "Dont": ("Do", "nt"), "cant": ("ca", "nt"),
            "wont": ("wo", "nt"), "isnt": ("is", "nt"), "doesnt": ("does", "nt"), "didnt": ("did", "nt")}
# spaCy's URL_MATCH (spacy/lang/tokenizer_exceptions.py), in short: an optional scheme and user,
# dotted host names ending in a lower-case top-level domain, a port, a path. A URL is not split
# inside (its suffix marks still are).
_URL = (r"(?:[\w+.-]{2,}://)?(?:[^\s:@/]+(?::[^\s@/]*)?@)?(?:[\w-]+\.)+[a-z\u00a1-\uffff]{2,63}\.?"
        r"(?::\d{2,5})?(?:[/?#]\S*)?")
_EMOTICONS = frozenset(("):", ":)", "(:", ":(", ";)", "''", ":-)", ":-(", "=)", ":/", ":p", ":P"))
_ABBREVIATION = re.compile(r"(?:[A-Za-z]\.)+\Z")  # e.g. i.e. a. U.S. stay whole


def word_tokens(text: str, language: str = "", korean: str = "spaces") -> list[str]:
    """The words of ``text`` as the rules count them, punctuation marks included.

    >>> word_tokens("Hello, world! It's 3.14 -- don't (well-known).")
    ['Hello', ',', 'world', '!', 'It', "'s", '3.14', '--', 'do', "n't", '(', 'well', '-', 'known', ')', '.']
    >>> word_tokens("北京是首都。", "zh")
    ['北', '京', '是', '首', '都', '。']
    """
    if language == "ko" and korean == "kiwi":
        return _kiwi_tokens(text)
    if language in PER_CHARACTER:
        return _cjk_re().findall(text)
    out: list[str] = []
    prefix, suffix, contraction, infix = _chunk_res()
    append = out.append
    for chunk in text.split():
        if chunk.isalnum() and chunk not in _SPECIAL:  # most words: nothing to split
            append(chunk)
        elif chunk[-1] in ",;:!?" and chunk[:-1].isalnum() and chunk[:-1] not in _SPECIAL:
            append(chunk[:-1])
            append(chunk[-1])
        else:
            split = _SPLITS.get(chunk)
            if split is None:
                split = _remember(chunk, prefix, suffix, contraction, infix)
            out.extend(split)
    return out


_SPLITS: dict[str, tuple[str, ...]] = {}
"""Chunks already split: code and markup repeat the same few hundred (``foo()``, ``x.y``), and
splitting one takes several regular expressions."""


def _remember(chunk: str, prefix, suffix, contraction, infix) -> tuple[str, ...]:
    if len(_SPLITS) > 200_000:  # bound the memory; a new corpus's chunks come in again
        _SPLITS.clear()
    out: list[str] = []
    _split_chunk(chunk, out, prefix, suffix, contraction, infix)
    _SPLITS[chunk] = split = tuple(out)
    return split


def _split_chunk(chunk: str, out: list, prefix, suffix, contraction, infix) -> None:
    if chunk in _SPECIAL:
        out.extend(_SPECIAL[chunk])
        return
    first, start, end = len(out), 0, len(chunk)
    while end - start > 1 and prefix.match(chunk, start):
        out.append(chunk[start])
        start += 1
    tail = []
    while end - start > 1 and not _ABBREVIATION.match(chunk, start, end):
        m = suffix.search(chunk, start, end) or contraction.search(chunk, start + 1, end)
        if m is None:
            break
        tail.append(m.group())
        end = m.start()
    core = chunk[start:end]
    if core in _SPECIAL:
        out.extend(_SPECIAL[core])
    elif len(core) > 2 and infix.search(core) and not _url_re().fullmatch(core):
        pos = 0
        for m in infix.finditer(core):
            if m.start() > pos:
                out.append(core[pos:m.start()])
            out.append(m.group())
            pos = m.end()
        if pos < len(core):
            out.append(core[pos:])
    elif core:
        out.append(core)
    out.extend(reversed(tail))
    for i in range(len(out) - 1, first, -1):  # spaCy's emoticon special cases, e.g. '):' and "''"
        if out[i - 1] + out[i] in _EMOTICONS:
            out[i - 1:i + 1] = [out[i - 1] + out[i]]


def is_symbol(token: str) -> bool:
    """True for a token made only of punctuation (datatrove's PUNCTUATION_SET test)."""
    marks = _punctuation()
    return all(ch in marks for ch in token)


def split_words(text: str) -> list[str]:
    """Whitespace words, with each CJK ideograph or kana a word of its own (``n_words``, shingles).

    >>> split_words("Hello, world! 你好 안녕하세요")
    ['Hello,', 'world!', '你', '好', '안녕하세요']
    """
    return _word_re().findall(text)


@lru_cache(maxsize=1)
def _chunk_res():
    import regex  # \p{L}, \p{Han}: the stdlib re has no Unicode classes

    # a final '.' splits off after a digit, a lower-case or uncased letter, a mark, or two capitals
    period = rf"(?<=[0-9\p{{Ll}}\p{{Lo}}{re.escape(_PUNCT + _QUOTES)}]|\p{{Lu}}\p{{Lu}})\."
    return (regex.compile(_PREFIX), regex.compile(rf"(?:\.\.\.|{_SUFFIX}|{period}|(?<=[0-9])\+)\Z"),
            regex.compile(rf"{_CONTRACTION}\Z"), regex.compile(_INFIX))


@lru_cache(maxsize=1)
def _url_re():
    import regex

    return regex.compile(_URL)


@lru_cache(maxsize=1)
def _cjk_re():
    import regex

    return regex.compile(rf"[{_CJK}]|[^\s{_CJK}\p{{P}}\p{{S}}]+|[\p{{P}}\p{{S}}]")


@lru_cache(maxsize=1)
def _word_re():
    import regex

    return regex.compile(rf"[{_CJK}]|(?:(?![{_CJK}])\S)+")


@lru_cache(maxsize=1)
def _punctuation() -> frozenset:
    # datatrove.utils.text.PUNCTUATION (0.10.1): ASCII and common CJK/typographic marks plus the
    # control characters; a token of these only is a "symbol", not a word, for Gopher's counts.
    marks = "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    controls = (chr(x) for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b))
    return frozenset(marks) | frozenset(controls)


@lru_cache(maxsize=1)
def _kiwi():
    try:
        from kiwipiepy import Kiwi
    except ImportError:
        from lmforge.errors import LmforgeError

        raise LmforgeError("clean: korean = 'kiwi' needs kiwipiepy: pip install 'lmforge[korean]' "
                           "(or set [clean.words] korean = 'spaces')") from None
    return Kiwi()


def _kiwi_tokens(text: str) -> list[str]:
    return [text[t.start:t.start + t.len] for t in _kiwi().tokenize(text)]


def is_punctuation(token: str) -> bool:
    """True when every character is a Unicode punctuation mark (spaCy's ``is_punct``)."""
    import unicodedata

    return all(unicodedata.category(ch).startswith("P") for ch in token)
