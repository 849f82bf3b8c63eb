"""Language identification with py3langid (Lui & Baldwin 2012; 142 labels, ko, ja and zh among them).

Probabilities are normalised, so the score is comparable to FineWeb's fastText threshold (0.65).
Every kept document records its language and score, whether or not languages are restricted.
"""

from __future__ import annotations

from functools import lru_cache

from lmforge.clean.document import Document


@lru_cache(maxsize=1)
def _identifier():
    # Loaded once per process (about a second), never at import time.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify_language(text: str) -> tuple[str, float]:
    """``(ISO 639-1 code, probability)`` of the most likely language of ``text``."""
    lang, score = _identifier().classify(text)
    return lang, float(score)


class LanguageFilter:
    """Keep documents in ``languages`` (empty: any) whose score reaches ``min_score``.

    Reasons: ``wrong_language`` (detail: the language found) and ``low_language_score``.
    """

    name = "language"

    def __init__(self, languages: list[str] = (), min_score: float = 0.65):
        self.languages = set(languages)
        self.min_score = min_score

    def filter(self, doc: Document):
        doc.language, doc.language_score = identify_language(doc.text)
        detail = f"{doc.language}:{doc.language_score:.3f}"
        if self.languages and doc.language not in self.languages:
            return False, "wrong_language", detail
        if doc.language_score < self.min_score:
            return False, "low_language_score", detail
        return True
