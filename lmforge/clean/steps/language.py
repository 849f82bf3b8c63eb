"""Language identification: py3langid (Lui & Baldwin 2012; 142 labels, ko, ja and zh among them)
by default, lingua (Stahl; 75 languages, better on short texts) as an option; both offline.

py3langid's probabilities are normalised, so its score is comparable to FineWeb's fastText
threshold (0.65). Every kept document records its language and score, whether or not languages
are restricted; the later steps split words and pick settings by that language.
"""

from __future__ import annotations

from functools import lru_cache

from lmforge.clean.steps import Step


@lru_cache(maxsize=1)
def _langid():
    # Loaded once per process (about a second), never at import time.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@lru_cache(maxsize=1)
def _lingua():
    try:
        from lingua import LanguageDetectorBuilder
    except ImportError:
        from lmforge.errors import LmforgeError

        raise LmforgeError("clean: [clean.language] backend = 'lingua' needs lingua: "
                           "pip install 'lmforge[lingua]' (or use backend = 'py3langid')") from None
    return LanguageDetectorBuilder.from_all_languages().build()  # models load as a script needs them


def identify_language(text: str, backend: str = "py3langid") -> tuple[str, float]:
    """``(ISO 639-1 code, probability)`` of the most likely language of ``text``."""
    if backend == "lingua":
        best = _lingua().compute_language_confidence_values(text[:20_000])
        if not best:
            return "", 0.0
        return best[0].language.iso_code_639_1.name.lower(), float(best[0].value)
    lang, score = _langid().classify(text)
    return lang, float(score)


class LanguageStep(Step):
    """Keep documents in ``languages`` (empty: any) whose score reaches their language's threshold.

    Reasons: ``wrong_language`` (detail: the language found) and ``low_language_score``.
    """

    name = "language"

    def __init__(self, settings=None, words=None):
        from lmforge.clean.config import LanguageStep as Settings

        super().__init__(settings or Settings(), words)
        self.languages = set(self.settings.languages)

    def filter(self, doc):
        s = self.settings
        doc.language, doc.language_score = identify_language(doc.text, s.backend)
        detail = f"{doc.language}:{doc.language_score:.3f}"
        if self.languages and doc.language not in self.languages:
            return False, "wrong_language", detail
        if doc.language_score < s.thresholds.get(doc.language, s.min_score):
            return False, "low_language_score", detail
        return True
