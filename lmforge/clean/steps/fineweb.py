"""FineWeb's own rules (Penedo et al. 2024, section 3.3), with the semantics of datatrove's
FineWebQualityFilter (0.10.1): non-blank lines as they are (not stripped), terminal punctuation
from datatrove.utils.text.TERMINAL_PUNCTUATION, duplicated-line characters over the text's
characters without line breaks, line breaks per word of the document's language."""

from __future__ import annotations

from lmforge.clean.steps import Step
from lmforge.clean.steps.gopher import find_duplicates


class FineWebStep(Step):
    """Reasons: ``line_punct_ratio``, ``short_line_ratio``, ``char_dup_ratio``, ``list_ratio``
    (datatrove's names); ``empty``."""

    name = "fineweb"

    def __init__(self, settings=None, words=None):
        from lmforge.clean.config import FineWebStep as Settings

        super().__init__(settings or Settings(), words)

    def filter(self, doc):
        s, text = self.settings_for(doc.language), doc.text
        lines = [ln for ln in text.split("\n") if ln.strip()]
        if not lines:
            return False, "empty"
        ends = terminal_punctuation()
        ratio = sum(1 for ln in lines if ln.endswith(ends)) / len(lines)
        if s.min_line_punct_ratio is not False and ratio < s.min_line_punct_ratio:
            return False, "line_punct_ratio", f"{ratio:.3f}"
        ratio = sum(1 for ln in lines if len(ln) <= s.short_line_length) / len(lines)
        if s.max_short_line_ratio is not False and ratio > s.max_short_line_ratio:
            return False, "short_line_ratio", f"{ratio:.3f}"
        chars = len(text) - text.count("\n")
        ratio = find_duplicates(lines)[1] / max(chars, 1)
        if s.max_dup_line_chars_ratio is not False and ratio > s.max_dup_line_chars_ratio:
            return False, "char_dup_ratio", f"{ratio:.3f}"
        ratio = text.count("\n") / max(len(self.tokens(doc)), 1)
        if s.max_newline_word_ratio is not False and ratio > s.max_newline_word_ratio:
            return False, "list_ratio", f"{ratio:.3f}"
        return True


# datatrove.utils.text.TERMINAL_PUNCTUATION (0.10.1): the marks that end a sentence, in any script
# (close to Unicode's Sentence_Terminal property).
TERMINAL_PUNCTUATION = tuple(
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964"
    "\u0965\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803"
    "\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c"
    "\u1c7e\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f"
    "\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb"
    "\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00010f55\U00010f56"
    "\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048"
    "\U000110be\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6"
    "\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9\U0001144b"
    "\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce"
    "\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7"
    "\U00011641\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43"
    "\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e"
    "\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88"
)


def terminal_punctuation() -> tuple[str, ...]:
    return TERMINAL_PUNCTUATION
