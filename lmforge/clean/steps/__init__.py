"""The per-document steps of the clean stage: a registry of small classes, run in the order
``[clean] steps`` names them.

A step has a ``name`` and one method, ``filter(doc)``, returning ``True`` (keep; it may have
changed ``doc.text``) or ``(False, reason)`` / ``(False, reason, detail)`` (the datatrove
convention). :func:`apply_step` counts ``in``, ``out`` and ``dropped_<reason>`` per step and keeps
the reject; nothing outside this package knows an individual step.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from importlib import import_module

from lmforge.clean.document import Document, Reject

REJECT_TEXT_CHARS = 2000
_TOKENS = "tokens"  # doc.meta key of the cached word tokens (never written out)

STEPS = {
    "url": "lmforge.clean.steps.url:URLStep",
    "extract": "lmforge.clean.steps.extract:ExtractStep",
    "language": "lmforge.clean.steps.language:LanguageStep",
    "gopher_repetition": "lmforge.clean.steps.gopher:GopherRepetitionStep",
    "gopher_quality": "lmforge.clean.steps.gopher:GopherQualityStep",
    "c4": "lmforge.clean.steps.c4:C4Step",
    "fineweb": "lmforge.clean.steps.fineweb:FineWebStep",
    "pii": "lmforge.clean.steps.pii:PIIStep",
}
"""Step name -> class; the name is also the step's settings table, ``[clean.<name>]``."""

LANGUAGE_DEFAULTS = {
    # Chinese and Japanese count a word per character (lmforge/clean/words.py), so Gopher's word
    # lengths, set for alphabetic text, do not apply (FineWeb-2 adapts them per language too).
    "gopher_quality": {**{lang: {"min_mean_word_length": False, "max_mean_word_length": False}
                          for lang in ("zh", "ja", "yue", "wuu")},
                       # A Korean word (eojeol) is 2-4 syllables: on 135 Korean pages of the
                       # LibreOffice help the mean was 2.7-5.6 (median 3.6), under Gopher's 3.
                       "ko": {"min_mean_word_length": 1.5}},
}
"""Built-in settings per language, under the user's ``by_language`` ones."""


class Step:
    """Base of the steps: ``settings`` is the step's config table, ``words`` the [clean.words] one."""

    name = ""

    def __init__(self, settings=None, words=None):
        self.settings = settings
        self.words = words
        self.counts: Counter = Counter()
        """Extra counters (masked e-mails, removed lines) that :func:`apply_step` adds to the step's."""
        self._by_language: dict[str, object] = {}

    def filter(self, doc: Document):
        raise NotImplementedError

    def tokens(self, doc: Document) -> list[str]:
        """``doc``'s words (lmforge/clean/words.py), computed once per text and language."""
        from lmforge.clean.words import word_tokens

        cached = doc.meta.get(_TOKENS)
        if cached is not None and cached[0] is doc.text and cached[1] == doc.language:
            return cached[2]
        tokens = word_tokens(doc.text, doc.language, self.words.korean if self.words else "spaces")
        doc.meta[_TOKENS] = (doc.text, doc.language, tokens)
        return tokens

    def settings_for(self, language: str):
        """The settings for documents in ``language``: built-in and ``by_language`` overrides applied."""
        if language not in self._by_language:
            overrides = {**LANGUAGE_DEFAULTS.get(self.name, {}).get(language, {}),
                         **getattr(self.settings, "by_language", {}).get(language, {})}
            self._by_language[language] = replace(self.settings, **overrides) if overrides else self.settings
        return self._by_language[language]


def step_class(name: str) -> type[Step]:
    module, cls = STEPS[name].split(":")
    return getattr(import_module(module), cls)


def build_steps(c) -> list[Step]:
    """The steps of ``c.steps`` (a CleanConfig), in order, each with its settings table."""
    return [step_class(name)(getattr(c, name), c.words) for name in c.steps]


def apply_step(step, doc: Document, stats, rejects: list[Reject]) -> bool:
    """Run ``step.filter(doc)``; count ``in``/``out``/``dropped_<reason>`` (and the step's own
    counters) in ``stats`` and keep the reject."""
    counts = stats.step(step.name)
    own = stats.source_step(doc.source, step.name)  # the source's funnel
    counts["in"] += 1
    own["in"] += 1
    t0 = time.perf_counter()
    verdict = step.filter(doc)
    stats.seconds[step.name] += time.perf_counter() - t0
    extra = getattr(step, "counts", None)
    if extra:
        counts.update(extra)
        extra.clear()
    if verdict is True:
        counts["out"] += 1
        own["out"] += 1
        return True
    _, reason, *detail = verdict
    counts[f"dropped_{reason}"] += 1
    own[f"dropped_{reason}"] += 1
    rejects.append(Reject.of(doc, step.name, reason, str(detail[0]) if detail else "", REJECT_TEXT_CHARS))
    return False


apply_filter = apply_step  # the dedup steps' name for it
