"""Config of the clean stage: inputs, the per-document steps and their settings, deduplication."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import ClassVar

from lmforge.clean.dedup.settings import MinHashConfig


MAX_WORKERS = 1024
"""More processes than any machine has cores is a typo (and a plan of millions of shards)."""


@dataclass
class InputSpec:
    """One input of the clean stage (``[[clean.inputs]]``)."""

    path: str = ""
    """A file, a folder or a glob (``data/*.warc.gz``)."""
    format: str = "auto"
    """auto, warc, wet, arc, html, jsonl, parquet."""
    source: str = ""
    """Name of the source (for mixtures); empty uses the path's stem (a folder's name, a file's
    name without extensions, or for a glob the folder it is in)."""
    text_field: str = "text"
    """Field holding the text in JSONL/Parquet."""

    def validate(self) -> list[str]:
        problems = [] if self.path else ["path: missing"]
        if self.format not in ("auto", "warc", "wet", "arc", "html", "jsonl", "parquet"):
            problems.append(f"format: {self.format!r} is not one of auto, warc, wet, arc, html, jsonl, parquet")
        return problems


Off = bool
"""A threshold typed ``float | Off`` (or ``int | Off``) is switched off by ``false``."""


def _threshold_problems(obj, ratios: tuple[str, ...] = (), counts: tuple[str, ...] = ()) -> list[str]:
    """``true`` is no threshold; ratios lie in [0, 1], counts and lengths are 0 or more."""
    problems = []
    for name in ratios + counts:
        value = getattr(obj, name)
        if value is True:
            problems.append(f"{name}: a number, or false to switch the rule off")
        elif value is not False and not (0 <= value <= 1 if name in ratios else value >= 0):
            problems.append(f"{name}: must be {'between 0 and 1' if name in ratios else '0 or more'} (or false)")
    return problems


@dataclass
class URLStep:
    """``[clean.url]``: drop documents by URL before their page is extracted."""

    block_domains: list[str] = field(default_factory=list)
    """Domains whose pages (subdomains included) are dropped, e.g. ["example.com"]."""
    block_patterns: list[str] = field(default_factory=list)
    """Regexes; a document whose URL matches one is dropped."""

    def validate(self) -> list[str]:
        return _pattern_problems(self.block_patterns)


@dataclass
class ExtractStep:
    """``[clean.extract]``: main text out of HTML with trafilatura."""

    fast: bool = False
    """Never run trafilatura's readability/jusText fallbacks. By default they run only when
    trafilatura's own pass finds under 250 characters, which keeps their gain on short or odd
    pages; ``true`` saves that second pass too, at some recall on such pages."""
    timeout_s: float | Off = 10.0
    """CPU seconds one page's extraction may take, plus ``timeout_s_per_mb`` per MB of HTML; a
    page over it is dropped as ``extract_timeout`` (trafilatura hangs on some pages: its issue
    #704). datatrove uses a fixed 1 s of wall time, which drops the largest real pages on a
    loaded machine."""
    timeout_s_per_mb: float = 30.0
    """Seconds added to the limit per MB of HTML."""
    drop_symbol_lines: bool = True
    """Remove lines made only of dashes, bullets or bars (empty list items and table
    rules that trafilatura's text output leaves)."""

    def validate(self) -> list[str]:
        problems = _threshold_problems(self, counts=("timeout_s",))
        if self.timeout_s_per_mb < 0:
            problems.append("timeout_s_per_mb: must be 0 or more")
        return problems


@dataclass
class LanguageStep:
    """``[clean.language]``: identify each document's language; keep the wanted ones."""

    languages: list[str] = field(default_factory=lambda: ["en"])
    """ISO 639-1 codes to keep; empty keeps every language (and still records it)."""
    min_score: float = 0.65
    """Drop documents whose language probability is lower (FineWeb: 0.65, its fastText threshold)."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """Per-language minimum scores, e.g. {ko = 0.8}; others use ``min_score``."""
    backend: str = "py3langid"
    """py3langid (default, 142 languages) or lingua (``pip install 'lmforge[lingua]'``; slower,
    better on short texts)."""

    def validate(self) -> list[str]:
        problems = [] if 0 <= self.min_score <= 1 else ["min_score: must be between 0 and 1"]
        problems += [f"thresholds.{k}: must be between 0 and 1" for k, v in self.thresholds.items() if not 0 <= v <= 1]
        if self.backend not in ("py3langid", "lingua"):
            problems.append(f"backend: {self.backend!r} is not one of py3langid, lingua")
        problems += [f"languages: {code!r} is not an ISO 639-1 code such as en, ko, ru"
                     for code in self.languages if not re.fullmatch(r"[a-z]{2,3}", code)]
        return problems


@dataclass
class WordsConfig:
    """``[clean.words]``: how the rules split words (see lmforge/clean/words.py)."""

    korean: str = "spaces"
    """spaces (eojeol, as written) or kiwi (kiwipiepy's morphemes, as datatrove;
    ``pip install 'lmforge[korean]'``)."""

    def validate(self) -> list[str]:
        return [] if self.korean in ("spaces", "kiwi") else [f"korean: {self.korean!r} is not one of spaces, kiwi"]


@dataclass
class GopherRepetitionStep:
    """``[clean.gopher_repetition]``: Gopher's repetition rules (Rae et al. 2021, table A1;
    datatrove's gopher_repetition_filter.py)."""

    dup_line_frac: float | Off = 0.30
    """Gopher table A1: at most this fraction of lines may repeat an earlier line."""
    dup_para_frac: float | Off = 0.30
    """Gopher table A1: at most this fraction of paragraphs may repeat an earlier one."""
    dup_line_char_frac: float | Off = 0.20
    """Gopher table A1: at most this fraction of characters may be in repeated lines."""
    dup_para_char_frac: float | Off = 0.20
    """Gopher table A1: at most this fraction of characters may be in repeated paragraphs."""
    top_2gram_char_frac: float | Off = 0.20
    """Gopher table A1: the commonest word 2-gram may cover at most this fraction of characters."""
    top_3gram_char_frac: float | Off = 0.18
    """Gopher table A1: the same for 3-grams."""
    top_4gram_char_frac: float | Off = 0.16
    """Gopher table A1: the same for 4-grams."""
    dup_5gram_char_frac: float | Off = 0.15
    """Gopher table A1: at most this fraction of characters in repeated word 5-grams."""
    dup_6gram_char_frac: float | Off = 0.14
    """Gopher table A1: the same for 6-grams."""
    dup_7gram_char_frac: float | Off = 0.13
    """Gopher table A1: the same for 7-grams."""
    dup_8gram_char_frac: float | Off = 0.12
    """Gopher table A1: the same for 8-grams."""
    dup_9gram_char_frac: float | Off = 0.11
    """Gopher table A1: the same for 9-grams."""
    dup_10gram_char_frac: float | Off = 0.10
    """Gopher table A1: the same for 10-grams."""
    by_language: dict[str, dict[str, float | Off]] = field(default_factory=dict)
    """Settings per language, e.g. ``[clean.gopher_repetition.by_language.ko] dup_line_frac = 0.4``."""

    def validate(self) -> list[str]:
        return _threshold_problems(self, ratios=RATIO_FIELDS[type(self).__name__]) + _by_language_problems(self)


@dataclass
class GopherQualityStep:
    """``[clean.gopher_quality]``: Gopher's quality rules (Rae et al. 2021, appendix A.1.1;
    datatrove's gopher_quality_filter.py)."""

    min_words: int | Off = 50
    """Gopher: fewer words (not counting punctuation marks) than this is too short to be useful."""
    max_words: int | Off = 100_000
    """Gopher: more words than this is not a normal document."""
    min_mean_word_length: float | Off = 3.0
    """Gopher: the mean word length (characters, punctuation marks not counted) is at least this."""
    max_mean_word_length: float | Off = 10.0
    """Gopher: and at most this."""
    max_hash_word_ratio: float | Off = 0.1
    """Gopher: at most this many '#' per word."""
    max_ellipsis_word_ratio: float | Off = 0.1
    """Gopher: at most this many ellipses ('...' or '…') per word."""
    max_bullet_lines_ratio: float | Off = 0.9
    """Gopher: at most this fraction of lines may start with a bullet ('•' or '-')."""
    max_ellipsis_lines_ratio: float | Off = 0.3
    """Gopher: at most this fraction of lines may end with an ellipsis."""
    min_alpha_words_ratio: float | Off = 0.8
    """Gopher: at least this fraction of words (punctuation marks count, as in datatrove) must
    contain a letter."""
    min_stop_words: int | Off = 2
    """Gopher: at least this many distinct stop words of the document's language (lmforge/clean/
    words.py: the, be, to, of, and, that, have, with for English); languages without a list skip it."""
    by_language: dict[str, dict[str, float | Off]] = field(default_factory=dict)
    """Settings per language, e.g. ``[clean.gopher_quality.by_language.ko] min_mean_word_length = 1.5``."""

    def validate(self) -> list[str]:
        problems = _threshold_problems(self, ratios=RATIO_FIELDS[type(self).__name__],
                                       counts=("min_words", "max_words", "min_mean_word_length",
                                               "max_mean_word_length", "min_stop_words"))
        return problems + _by_language_problems(self)


@dataclass
class C4Step:
    """``[clean.c4]``: C4's rules (Raffel et al. 2020, section 2.2; datatrove's c4_filters.py):
    lines are removed, pages dropped."""

    remove_citations: bool = True
    """Remove Wikipedia-style citation marks ([1], [edit], [citation needed])."""
    drop_lines_without_terminal_punct: bool = False
    """C4: keep only lines that end in . ! ? or a quote. Off in FineWeb's recipe, which has its
    own punctuated-lines rule (datatrove's FineWeb example: filter_no_terminal_punct=False)."""
    min_words_per_line: int | Off = 3
    """C4: remove lines with fewer words."""
    max_word_length: int | Off = 1000
    """C4 (its code): remove lines with a word longer than this."""
    min_sentences: int | Off = 5
    """C4: drop pages with fewer sentences in the lines kept."""
    lorem_ipsum: bool = True
    """C4: drop pages that contain "lorem ipsum"."""
    javascript: bool = True
    """C4: remove lines that mention javascript."""
    curly_bracket: bool = True
    """C4: drop pages that contain '{' (code, in C4's view). Note that this drops most
    programming documentation."""
    policy: bool = True
    """C4 (its code): remove lines about terms of use, privacy and cookie policies."""
    by_language: dict[str, dict[str, float | Off]] = field(default_factory=dict)
    """Settings per language, e.g. ``[clean.c4.by_language.zh] min_words_per_line = false``."""

    def validate(self) -> list[str]:
        return _threshold_problems(self, counts=("min_words_per_line", "max_word_length", "min_sentences")) + \
            _by_language_problems(self)


@dataclass
class FineWebStep:
    """``[clean.fineweb]``: FineWeb's own rules (Penedo et al. 2024; datatrove's
    fineweb_quality_filter.py)."""

    min_line_punct_ratio: float | Off = 0.12
    """FineWeb: at least this fraction of lines must end in terminal punctuation."""
    max_short_line_ratio: float | Off = 0.67
    """FineWeb: at most this fraction of lines may be ``short_line_length`` characters or shorter."""
    short_line_length: int = 30
    """FineWeb: the length of a short line."""
    max_dup_line_chars_ratio: float | Off = 0.01
    """FineWeb: at most this fraction of characters may be in lines that repeat an earlier one."""
    max_newline_word_ratio: float | Off = 0.3
    """FineWeb: at most this many line breaks per word (lists)."""
    by_language: dict[str, dict[str, float | Off]] = field(default_factory=dict)
    """Settings per language, e.g. ``[clean.fineweb.by_language.ko] max_short_line_ratio = 0.8``."""

    def validate(self) -> list[str]:
        return _threshold_problems(self, ratios=RATIO_FIELDS[type(self).__name__]) + _by_language_problems(self)


@dataclass
class PIIStep:
    """``[clean.pii]``: mask personal data."""

    email: bool = True
    """Replace e-mail addresses by <EMAIL>."""
    ip: bool = True
    """Replace public IP addresses by <IP_ADDRESS>."""
    phone: bool = True
    """Replace phone numbers by <PHONE>."""


RATIO_FIELDS = {
    "GopherRepetitionStep": tuple(f.name for f in fields(GopherRepetitionStep) if f.name.endswith("frac")),
    "GopherQualityStep": ("max_hash_word_ratio", "max_ellipsis_word_ratio", "max_bullet_lines_ratio",
                          "max_ellipsis_lines_ratio", "min_alpha_words_ratio"),
    "FineWebStep": ("min_line_punct_ratio", "max_short_line_ratio", "max_dup_line_chars_ratio"),
}


def _by_language_problems(step) -> list[str]:
    names = {f.name for f in fields(step)} - {"by_language"}
    problems = []
    for lang, settings in step.by_language.items():
        problems += [f"by_language.{lang}.{k}: unknown setting (known: {', '.join(sorted(names))})"
                     for k in settings if k not in names]
    return problems


DEFAULT_STEPS = ["url", "extract", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb", "pii"]
"""FineWeb's recipe (datatrove's examples/fineweb.py), in its order: every step there is
(lmforge.clean.steps.STEPS), each once."""


@dataclass
class CleanConfig:
    """``[clean]``: turns raw records into documents worth training on."""

    # Settings that change how fast, not what: outside the stage fingerprint (lmforge/fingerprint.py).
    NOT_IN_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"workers", "executor"})

    inputs: list[InputSpec] = field(default_factory=list)
    """Existing archives to read; empty reads this run's crawl/*.warc.gz as source 'web'."""
    read_crawl: bool = False
    """Read this run's crawl/*.warc.gz (source 'web') before the inputs, too."""
    steps: list[str] = field(default_factory=lambda: list(DEFAULT_STEPS))
    """The per-document steps, in order; each has its own table of settings ([clean.<step>]).
    Exact and near dedup follow them (``exact_dedup``, ``minhash_dedup``)."""
    url: URLStep = field(default_factory=URLStep)
    extract: ExtractStep = field(default_factory=ExtractStep)
    language: LanguageStep = field(default_factory=LanguageStep)
    gopher_repetition: GopherRepetitionStep = field(default_factory=GopherRepetitionStep)
    gopher_quality: GopherQualityStep = field(default_factory=GopherQualityStep)
    c4: C4Step = field(default_factory=C4Step)
    fineweb: FineWebStep = field(default_factory=FineWebStep)
    pii: PIIStep = field(default_factory=PIIStep)
    words: WordsConfig = field(default_factory=WordsConfig)
    url_dedup: bool = True
    """Keep one page per URL as web servers spell it (``/`` and ``/index.html`` are one page), also
    with exact and near dedup switched off."""
    exact_dedup: bool = True
    minhash_dedup: bool = True
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    """``[clean.minhash]``: near-dedup settings (FineWeb's: word 5-grams, 14 bands x 8 rows)."""
    workers: int = 1
    """Processes for extraction and filtering (0 = one per CPU)."""
    executor: str = "local"
    """local (process pool) or ray."""

    @staticmethod
    def upgrade_keys(data: dict) -> dict:
        """The keys of before ``steps`` (``languages``, ``extract_fast``, ``[clean.quality]``, ...)
        moved to their step's table, so older configs and run directories still load."""
        def move(key, table, name):
            if key in data:
                data.setdefault(table, {}).setdefault(name, data.pop(key))

        move("languages", "language", "languages")
        move("min_language_score", "language", "min_score")
        move("extract_fast", "extract", "fast")
        move("url_block_domains", "url", "block_domains")
        move("url_block_patterns", "url", "block_patterns")
        if isinstance(data.get("pii"), bool):
            if not data.pop("pii"):
                data["steps"] = [s for s in data.get("steps", DEFAULT_STEPS) if s != "pii"]
        if isinstance(data.get("quality"), dict):
            _upgrade_quality(data, data.pop("quality"))
        return data

    def validate(self) -> list[str]:
        problems = []
        if self.executor not in ("local", "ray"):
            problems.append(f"executor: {self.executor!r} is not one of local, ray")
        if not 0 <= self.workers <= MAX_WORKERS:
            problems.append(f"workers: must be 0 (one per CPU) to {MAX_WORKERS}")
        problems += [f"steps: {name!r} is not a step (known: {', '.join(DEFAULT_STEPS)})" for name in self.steps
                     if name not in DEFAULT_STEPS]
        if len(set(self.steps)) != len(self.steps):
            problems.append("steps: a step is named twice")
        if "extract" not in self.steps or any(s != "url" for s in self.steps[:self.steps.index("extract")]):
            problems.append("steps: 'extract' must be there, after at most 'url' (the other steps read the text)")
        return problems


_QUALITY_KEYS = {  # [clean.quality] key of before -> (step, setting)
    "min_words": [("gopher_quality", "min_words")], "max_words": [("gopher_quality", "max_words")],
    "min_mean_word_length": [("gopher_quality", "min_mean_word_length")],
    "max_mean_word_length": [("gopher_quality", "max_mean_word_length")],
    "max_symbol_word_ratio": [("gopher_quality", "max_hash_word_ratio"), ("gopher_quality", "max_ellipsis_word_ratio")],
    "max_bullet_lines_ratio": [("gopher_quality", "max_bullet_lines_ratio")],
    "max_ellipsis_lines_ratio": [("gopher_quality", "max_ellipsis_lines_ratio")],
    "min_alpha_words_ratio": [("gopher_quality", "min_alpha_words_ratio")],
    "min_stop_words": [("gopher_quality", "min_stop_words")],
    "min_punct_lines_ratio": [("fineweb", "min_line_punct_ratio")],
    "max_duplicate_lines_ratio": [("gopher_repetition", "dup_line_frac")],
    "max_duplicate_line_chars_ratio": [("gopher_repetition", "dup_line_char_frac")],
}


def _upgrade_quality(data: dict, quality: dict) -> None:
    for key, value in quality.items():
        if key == "enabled":
            if value is False:
                rules = ("gopher_repetition", "gopher_quality", "c4", "fineweb")
                data["steps"] = [s for s in data.get("steps", DEFAULT_STEPS) if s not in rules]
            continue
        for table, name in _QUALITY_KEYS.get(key, [("gopher_quality", key)]):  # unknown keys get reported there
            data.setdefault(table, {}).setdefault(name, value)


def _pattern_problems(patterns: list[str]) -> list[str]:
    problems = []
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"url_block_patterns[{i}]: not a valid regex ({exc})")
    return problems
