"""C4's rules (Raffel et al. 2020, section 2.2, and its code, tensorflow_datasets c4_utils.py),
with the semantics of datatrove's C4QualityFilter (0.10.1): lines are removed, pages dropped.

Per line, in datatrove's order: a word longer than ``max_word_length`` removes the line; citation
marks are removed; with ``drop_lines_without_terminal_punct`` a line must end in . ? ! " ' (and
not '...'); a line needs ``min_words_per_line`` words; "lorem ipsum" drops the page; a line that
mentions javascript goes; a '{' drops the page; a line about terms of use, privacy or cookie
policies goes. The page needs ``min_sentences`` sentences in its kept lines (counted as spaCy's
sentencizer counts them, as datatrove does). Removed lines are counted as
``removed_lines_<rule>``.
"""

from __future__ import annotations

import re

from lmforge.clean.steps import Step

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
# spaCy's Sentencizer.default_punct_chars (spacy/pipeline/sentencizer.pyx), the marks that end a
# sentence; datatrove counts the sentences of each kept line with it.
SENTENCE_ENDS = frozenset(
    "!.?։؟۔܀܁܂߹।॥၊။።፧፨᙮᜵᜶᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗！．？｡。"
) | frozenset(("𐩖", "𐩗", "𑁇", "𑁈", "𑂾", "𑂿", "𑃀", "𑃁", "𑅁", "𑅂", "𑅃", "𑇅", "𑇆", "𑇍", "𑇞", "𑇟",
               "𑈸", "𑈹", "𑈻", "𑈼", "𑊩", "𑑋", "𑑌", "𑗂", "𑗃", "𑗉", "𑗊", "𑗋", "𑗌", "𑗍", "𑗎",
               "𑗏", "𑗐", "𑗑", "𑗒", "𑗓", "𑗔", "𑗕", "𑗖", "𑗗", "𑙁", "𑙂", "𑜼", "𑜽", "𑜾", "𑩂",
               "𑩃", "𑪛", "𑪜", "𑱁", "𑱂", "𖩮", "𖩯", "𖫵", "𖬷", "𖬸", "𖭄", "𛲟", "𝪈"))


class C4Step(Step):
    """Reasons: ``lorem_ipsum``, ``curly_bracket``, ``too_few_sentences``."""

    name = "c4"

    def __init__(self, settings=None, words=None):
        from lmforge.clean.config import C4Step as Settings

        super().__init__(settings or Settings(), words)

    def filter(self, doc):
        s = self.settings_for(doc.language)
        sentences, kept = 0, []
        for line in doc.text.splitlines():
            line = line.strip()
            words = self._line_words(line, doc.language)
            if s.max_word_length is not False and any(len(w) > s.max_word_length for w in words):
                self.counts["removed_lines_too_long_word"] += 1
                continue
            if s.remove_citations:
                line = CITATION.sub("", line)
            if s.drop_lines_without_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
                self.counts["removed_lines_no_terminal_punct"] += 1
                continue
            if s.min_words_per_line is not False and len(words) < s.min_words_per_line:
                self.counts["removed_lines_too_few_words"] += 1
                continue
            lower = line.lower()
            if s.lorem_ipsum and "lorem ipsum" in lower:
                return False, "lorem_ipsum"
            if s.javascript and "javascript" in lower:
                self.counts["removed_lines_javascript"] += 1
                continue
            if s.curly_bracket and "{" in line:
                return False, "curly_bracket"
            if s.policy and any(p in lower for p in POLICY):
                self.counts["removed_lines_policy"] += 1
                continue
            if s.min_sentences is not False:
                sentences += self._sentences(line, doc.language)
            kept.append(line)
        if s.min_sentences is not False and sentences < s.min_sentences:
            return False, "too_few_sentences", str(sentences)
        doc.text = "\n".join(kept).strip()
        return True if doc.text else (False, "too_few_sentences", "0")

    def _line_words(self, line: str, language: str) -> list[str]:
        from lmforge.clean.words import PER_CHARACTER, word_tokens

        return word_tokens(line, language) if language in PER_CHARACTER else line.split()

    def _sentences(self, line: str, language: str) -> int:
        """spaCy's Sentencizer: a sentence starts at the first word after a sentence-ending mark."""
        from lmforge.clean.words import is_punctuation, word_tokens

        count, seen_end = 0, False
        for i, token in enumerate(word_tokens(line, language)):
            if i == 0:
                count = 1
            elif seen_end and not is_punctuation(token) and token not in SENTENCE_ENDS:
                count += 1
                seen_end = False
            if token in SENTENCE_ENDS:
                seen_end = True
        return count
