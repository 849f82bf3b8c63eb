"""Each step and rule on small texts with known answers: the reason a document is dropped, and
that ordinary prose passes."""

import dataclasses

import pytest
from clean_texts import BREAD, FRENCH, KOREAN, RIVER, RUSSIAN

from lmforge.clean import config as cc
from lmforge.clean.document import Document
from lmforge.clean.steps import build_steps
from lmforge.clean.steps.c4 import C4Step
from lmforge.clean.steps.fineweb import FineWebStep
from lmforge.clean.steps.gopher import GopherQualityStep, GopherRepetitionStep
from lmforge.clean.steps.language import LanguageStep
from lmforge.clean.steps.url import URLStep
from lmforge.clean.words import split_words, word_tokens
from lmforge.config import config_from_dict


def doc(text: str, language: str = "en", url: str = "https://example.com/a") -> Document:
    return Document(id="d", url=url, source="test", text=text, language=language)


def reason(step, text, language="en"):
    verdict = step.filter(doc(text, language))
    return True if verdict is True else verdict[1]


# ---------------------------------------------------------------- language


@pytest.mark.parametrize("text,code", [(RIVER, "en"), (KOREAN, "ko"), (RUSSIAN, "ru"), (FRENCH, "fr")])
def test_language_is_identified_with_a_normalised_score(text, code):
    d = doc(text, language="")
    assert LanguageStep(cc.LanguageStep(languages=[])).filter(d) is True
    assert d.language == code and 0.65 <= d.language_score <= 1.0


def test_language_step_keeps_configured_languages_and_names_the_one_dropped():
    f = LanguageStep(cc.LanguageStep(languages=["en", "ko"]))
    assert f.filter(doc(RIVER)) is True and f.filter(doc(KOREAN)) is True
    keep, why, detail = f.filter(doc(FRENCH))
    assert (keep, why) == (False, "wrong_language") and detail.startswith("fr:")


def test_per_language_score_thresholds():
    f = LanguageStep(cc.LanguageStep(languages=[], min_score=0.5, thresholds={"ko": 1.01}))
    assert f.filter(doc(RIVER)) is True
    assert f.filter(doc(KOREAN))[1] == "low_language_score"


# ---------------------------------------------------------------- Gopher quality

SENTENCE = "The cat sat on the mat and looked at the birds that flew over the garden wall."


def test_normal_paragraphs_pass_every_rule():
    steps = [GopherRepetitionStep(), GopherQualityStep(), C4Step(), FineWebStep()]
    for text, lang in ((RIVER, "en"), (BREAD, "en"), (KOREAN, "ko"), (RUSSIAN, "ru")):
        for step in steps:
            assert step.filter(doc(text, lang)) is True, (lang, step.name)


@pytest.mark.parametrize("text,expected", [
    ("Too short to keep.", "too_few_words"),
    (" ".join(["word"] * 200) + ".", "too_many_words"),  # with max_words=100
    (" ".join(["a", "b", "c", "to", "of", "the", "and"] * 10) + ".", "mean_word_length"),
    (" ".join(["incomprehensibilities"] * 60) + ".", "mean_word_length"),
    (SENTENCE + " #tag" * 30 + " " + SENTENCE * 2, "hash_word_ratio"),
    (SENTENCE * 3 + " and so on..." * 12, "ellipsis_word_ratio"),
    ("\n".join(f"- remember item {i} among things that have to go with shopping" for i in range(30)),
     "bullet_lines"),
    ("\n".join(f"And then the wonderful story of chapter {i} continued onwards endlessly …" for i in range(30)),
     "ellipsis_lines"),
    (SENTENCE * 2 + " 12345 67890 3.14159 2024-01-01 1000000" * 12, "alpha_words_ratio"),
    # punctuation marks are words for this rule, as in datatrove: 100 words and 60 commas
    (" ".join(["the", "of", "cats,", "dogs,", "birds,"] * 20), "alpha_words_ratio"),
    (" ".join(f"Apples pears plums cherries grapes bananas number{i}." for i in range(20)), "stop_words"),
])
def test_each_gopher_quality_rule_fires_with_its_reason(text, expected):
    step = GopherQualityStep(cc.GopherQualityStep(max_words=100 if expected == "too_many_words" else 100_000,
                                                  max_ellipsis_lines_ratio=0.3))
    assert reason(step, text) == expected


def test_a_rule_set_to_false_is_off():
    text = " ".join(f"Apples pears plums cherries grapes bananas number{i}." for i in range(20))
    assert reason(GopherQualityStep(cc.GopherQualityStep(min_stop_words=False)), text) is True
    assert reason(GopherQualityStep(cc.GopherQualityStep(min_words=False)), "The cat of the house") is True


def test_stop_words_use_the_documents_language():
    no_stop_words = " ".join(f"Apples pears plums cherries grapes bananas number{i}." for i in range(20))
    assert reason(GopherQualityStep(), no_stop_words, "de") is True  # no German list: rule skipped
    assert reason(GopherQualityStep(), RIVER.replace("the ", "a ").replace("of ", "from "), "en") is True
    assert reason(GopherQualityStep(), RIVER.lower().replace("the ", "x ").replace("of ", "x ")
                  .replace("and ", "x ").replace("to ", "x ").replace("that ", "x ").replace("with ", "x "),
                  "en") == "stop_words"


# ---------------------------------------------------------------- Gopher repetition


@pytest.mark.parametrize("text,expected", [
    ("\n\n".join([SENTENCE] * 5 + [f"Paragraph {i} is new and different." for i in range(6)]), "dup_para_frac"),
    ("\n\n".join([SENTENCE * 3] * 2 + [f"Paragraph {i} is new." for i in range(8)]), "dup_para_char_frac"),
    ("\n".join([SENTENCE] * 5 + [f"Line {i} of the text that is said to be new." for i in range(6)]),
     "dup_line_frac"),
    ("\n".join([SENTENCE * 3] * 2 + [f"Line {i} is new." for i in range(12)]), "dup_line_char_frac"),
    ("I like big cats. " + "big cats " * 40 + RIVER[:300], "top_2_gram"),
    (RIVER + " " + " ".join([RIVER.split(".")[0] + "."] * 5), "duplicated_5_n_grams"),
])
def test_each_gopher_repetition_rule_fires_with_its_reason(text, expected):
    assert reason(GopherRepetitionStep(), text) == expected


def test_repetition_known_values():
    from lmforge.clean.steps.gopher import _duplicated_ngram_chars, _NGramHashes, _top_ngram_chars

    words = "a b c a b c a b c x".split()
    lengths = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    grams = _NGramHashes(words)
    assert _top_ngram_chars(grams.of(2), 2, lengths) == 3 * 3  # "a b" three times
    # 5-grams: abcab, bcabc, cabca, abcab (repeat: 5 chars, jump 5 to index 8: 'c x' too short)
    assert _duplicated_ngram_chars(grams.of(5), 5, lengths) == 5


# ---------------------------------------------------------------- C4


def test_c4_removes_lines_and_counts_them():
    text = "\n".join([SENTENCE, "Please enable Javascript to view this page.", "Menu", SENTENCE,
                      "Read our privacy policy for details here.", SENTENCE, SENTENCE, SENTENCE + " [1]"])
    d = doc(text)
    step = C4Step()
    assert step.filter(d) is True
    assert d.text == "\n".join([SENTENCE] * 5)
    assert step.counts == {"removed_lines_javascript": 1, "removed_lines_too_few_words": 1,
                           "removed_lines_policy": 1}


@pytest.mark.parametrize("text,expected", [
    (RIVER + "\nLorem ipsum dolor sit amet, consectetur.", "lorem_ipsum"),
    (RIVER + "\nint main() { return 0; } is a C program.", "curly_bracket"),
    ("One sentence only here. Two of them here.", "too_few_sentences"),
])
def test_c4_page_rules(text, expected):
    assert reason(C4Step(), text) == expected


def test_c4_terminal_punctuation_rule_is_optional():
    text = RIVER + "\nA heading without a full stop"
    kept = doc(text)
    assert C4Step().filter(kept) is True and kept.text.endswith("full stop")
    strict = doc(text)
    assert C4Step(cc.C4Step(drop_lines_without_terminal_punct=True)).filter(strict) is True
    assert not strict.text.endswith("full stop")


def test_sentences_are_counted_like_spacy_sentencizer():
    step = C4Step()
    assert step._sentences("One. Two! Three? Four", "en") == 4
    assert step._sentences("Version 3.14 is out... really.", "en") == 1  # '...' is no sentence end there
    assert step._sentences("It works (really). Yes", "en") == 2


# ---------------------------------------------------------------- FineWeb


@pytest.mark.parametrize("text,expected", [
    ("\n".join(f"A line number {i} of words without an end mark" for i in range(20)), "line_punct_ratio"),
    ("\n".join(["Short line."] * 3 + [f"Item {i}." for i in range(10)] + [SENTENCE]), "short_line_ratio"),
    ("\n".join([SENTENCE, SENTENCE] + [RIVER]), "char_dup_ratio"),
    ("\n".join(f"Item{i}" for i in range(40)) + "\n" + SENTENCE * 2, "list_ratio"),
])
def test_each_fineweb_rule_fires_with_its_reason(text, expected):
    lists = cc.FineWebStep(max_short_line_ratio=False, min_line_punct_ratio=False)
    step = FineWebStep(lists if expected == "list_ratio" else None)
    assert reason(step, text) == expected


# ---------------------------------------------------------------- words and languages


def test_words_are_split_like_spacy_english():
    assert word_tokens("Hello, world! It's (well-known) e.g. 3.14 and/or os.path key/value") == \
        ["Hello", ",", "world", "!", "It", "'s", "(", "well", "-", "known", ")", "e.g.", "3.14", "and/or",
         "os.path", "key", "/", "value"]
    # spaCy keeps URLs whole and splits "cannot" and "id" (I'd)
    assert word_tokens("See https://docs.python.org/3/library/re.html, id cannot") == \
        ["See", "https://docs.python.org/3/library/re.html", ",", "i", "d", "can", "not"]


def test_cjk_text_is_split_per_character_and_passes():
    chinese = "北京是中国的首都，也是一座有三千多年历史的古城。" * 8
    assert len(word_tokens(chinese, "zh")) > 100 and len(split_words(chinese)) > 100
    assert split_words("안녕하세요 세계") == ["안녕하세요", "세계"]
    assert reason(GopherQualityStep(), chinese, "zh") is True
    assert reason(GopherQualityStep(), chinese, "en") == "too_few_words"  # no spaces: one word per run


def test_by_language_settings_override_the_step_settings():
    text = " ".join(["incomprehensibilities"] * 60) + "."
    step = GopherQualityStep(cc.GopherQualityStep(by_language={"de": {"max_mean_word_length": False}}))
    assert reason(step, text, "en") == "mean_word_length"
    assert reason(step, text, "de") is True


# ---------------------------------------------------------------- URL, registry, config


def test_url_step_blocks_domains_with_subdomains_and_patterns():
    f = URLStep(cc.URLStep(block_domains=["spam.example"], block_patterns=[r"/ads/"]))
    assert f.filter(doc(RIVER, url="https://news.spam.example/x")) == (False, "blocked_domain", "spam.example")
    assert f.filter(doc(RIVER, url="https://ok.org/ads/1"))[:2] == (False, "blocked_url")
    assert f.filter(doc(RIVER, url="https://notspam.example/x")) is True


def test_steps_are_built_in_the_declared_order_with_their_settings():
    cfg = config_from_dict({"clean": {"steps": ["extract", "fineweb", "language"],
                                      "fineweb": {"max_short_line_ratio": False, "short_line_length": 10}}})
    steps = build_steps(cfg.clean)
    assert [s.name for s in steps] == ["extract", "fineweb", "language"]
    assert steps[1].settings.max_short_line_ratio is False and steps[1].settings.short_line_length == 10


def test_default_steps_are_fineweb_recipe():
    assert config_from_dict({}).clean.steps == ["url", "extract", "language", "gopher_repetition",
                                               "gopher_quality", "c4", "fineweb", "pii"]


@pytest.mark.parametrize("clean,problem", [
    ({"steps": ["extract", "quality"]}, "steps: 'quality' is not a step"),
    ({"steps": ["language", "extract"]}, "steps: 'extract' must be there"),
    ({"gopher_quality": {"min_alpha_words_ratio": True}}, "min_alpha_words_ratio: a number, or false"),
    ({"fineweb": {"max_short_line_ratio": 2.0}}, "max_short_line_ratio: must be between 0 and 1"),
    ({"c4": {"by_language": {"ko": {"min_word": 2}}}}, "by_language.ko.min_word: unknown setting"),
])
def test_bad_step_settings_name_the_key(clean, problem):
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError, match=problem):
        config_from_dict({"clean": clean})


def test_every_step_setting_is_a_dataclass_field_with_a_documented_source():
    from lmforge.clean.steps.table import setting_rows

    rows = setting_rows()
    assert {r[0] for r in rows} >= {"gopher_repetition", "gopher_quality", "c4", "fineweb", "extract"}
    assert all(doc for *_, doc in rows), [r for r in rows if not r[3]]
    assert dataclasses.is_dataclass(cc.GopherRepetitionStep)


def test_the_settings_table_in_the_docs_is_up_to_date():
    from pathlib import Path

    from lmforge.clean.steps.table import with_table

    doc = Path(__file__).resolve().parents[2] / "docs" / "clean.md"
    text = doc.read_text(encoding="utf-8")
    assert with_table(text) == text, "run: python -m lmforge.clean.steps --update docs/clean.md"


def _find_all_duplicate(words, n):
    """datatrove 0.10.1's gopher_repetition_filter.find_all_duplicate, as the reference."""
    unique, repeated_chars, idx = set(), 0, 0
    while idx < len(words) - n + 1:
        n_gram = "".join(words[idx:idx + n])
        if n_gram in unique:
            repeated_chars += len(n_gram)
            idx += n
        else:
            unique.add(n_gram)
            idx += 1
    return repeated_chars


def test_ngram_rules_match_datatrove_on_random_texts():
    import random
    from itertools import accumulate

    from collections import Counter

    from lmforge.clean.steps.gopher import _duplicated_ngram_chars, _NGramHashes, _top_ngram_chars

    rng = random.Random(0)
    vocab = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]
    for _ in range(300):
        words = [rng.choice(vocab[:rng.randint(2, 7)]) for _ in range(rng.randint(0, 80))]
        lengths = [0, *accumulate(map(len, words))]
        grams = _NGramHashes(words)
        for n in range(2, 11):
            if len(words) < n:
                continue
            if n <= 4:  # datatrove's find_top_duplicate
                gram, count = Counter(" ".join(words[i:i + n]) for i in range(len(words) - n + 1)).most_common(1)[0]
                assert _top_ngram_chars(grams.of(n), n, lengths) == len(gram) * count, (words, n)
            else:
                assert _duplicated_ngram_chars(grams.of(n), n, lengths) == _find_all_duplicate(words, n), (words, n)


def test_the_registry_has_every_step_of_the_recipe_and_no_other():
    from lmforge.clean.config import DEFAULT_STEPS
    from lmforge.clean.steps import STEPS, step_class

    assert list(STEPS) == DEFAULT_STEPS
    assert all(step_class(name).name == name for name in STEPS)
