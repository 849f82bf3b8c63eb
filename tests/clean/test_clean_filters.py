import pytest
from clean_texts import BREAD, FRENCH, KOREAN, RIVER, RUSSIAN

from lmforge.clean.document import Document
from lmforge.clean.filters.language import LanguageFilter
from lmforge.clean.config import QualityConfig
from lmforge.clean.filters.quality import GopherQualityFilter, split_words
from lmforge.clean.filters.url import URLFilter


def doc(text: str, language: str = "en", url: str = "https://example.com/a") -> Document:
    return Document(id="d", url=url, source="test", text=text, language=language)


@pytest.mark.parametrize("text,code", [(RIVER, "en"), (KOREAN, "ko"), (RUSSIAN, "ru"), (FRENCH, "fr")])
def test_language_is_identified_with_a_normalised_score(text, code):
    d = doc(text, language="")
    assert LanguageFilter([], 0.65).filter(d) is True
    assert d.language == code and 0.65 <= d.language_score <= 1.0


def test_language_filter_keeps_configured_languages_and_names_the_one_dropped():
    f = LanguageFilter(["en", "ko"], 0.65)
    assert f.filter(doc(RIVER)) is True
    assert f.filter(doc(KOREAN)) is True
    keep, reason, detail = f.filter(doc(FRENCH))
    assert (keep, reason) == (False, "wrong_language") and detail.startswith("fr:")


def test_low_language_score_is_dropped():
    keep, reason, detail = LanguageFilter([], 0.99).filter(doc("ok ok 123 hello bonjour hallo ciao"))
    assert (keep, reason) == (False, "low_language_score")


def test_normal_paragraphs_pass_every_quality_rule():
    f = GopherQualityFilter()
    for text, lang in ((RIVER, "en"), (BREAD, "en"), (KOREAN, "ko"), (RUSSIAN, "ru")):
        assert f.filter(doc(text, lang)) is True, lang


SENTENCE = "The cat sat on the mat and looked at the birds that flew over the garden wall."


@pytest.mark.parametrize("text,reason", [
    ("Too short to keep.", "too_few_words"),
    (" ".join(["word"] * 200) + ".", "too_many_words"),  # with max_words=100
    (" ".join(["a", "b", "c", "to", "of", "the", "and"] * 10) + ".", "mean_word_length"),
    (" ".join(["incomprehensibilities"] * 60) + ".", "mean_word_length"),
    (SENTENCE + " #tag" * 30 + " " + SENTENCE * 2, "symbol_word_ratio"),
    (SENTENCE * 2 + " 12345 67890 3.14159 2024-01-01 1000000" * 12, "alpha_words_ratio"),
    (" ".join(f"Apples pears plums cherries grapes bananas number{i}." for i in range(20)), "stop_words"),
    ("\n".join(f"- remember item {i} among things that have to go with shopping" for i in range(30)),
     "bullet_lines"),
    ("\n".join(f"And then the story of line {i} went on and on..." for i in range(30)), "ellipsis_lines"),
    ("\n".join(f"the heading number {i} of the list with words" for i in range(30)), "punctuated_lines"),
    ("\n".join([SENTENCE] * 10 + [f"Line {i} of the text that is said to be new." for i in range(10)]),
     "duplicate_lines"),
    ("\n".join([SENTENCE * 4] * 2 + [f"Line {i} is new." for i in range(12)]), "duplicate_line_chars"),
])
def test_each_quality_rule_fires_with_its_reason(text, reason):
    f = GopherQualityFilter(QualityConfig(max_words=100 if reason == "too_many_words" else 100_000))
    result = f.filter(doc(text))
    assert result is not True and result[1] == reason, result


def test_stop_word_rule_is_english_only():
    no_stop_words = " ".join(f"Apples pears plums cherries grapes bananas number{i}." for i in range(20))
    assert GopherQualityFilter().filter(doc(no_stop_words, language="de")) is True


def test_cjk_text_is_split_per_character_and_passes():
    chinese = "北京是中国的首都，也是一座有三千多年历史的古城。" * 8
    assert len(split_words(chinese)) > 100
    assert split_words("안녕하세요 세계") == ["안녕하세요", "세계"]
    assert GopherQualityFilter().filter(doc(chinese, language="zh")) is True


def test_url_filter_blocks_domains_with_subdomains_and_patterns():
    f = URLFilter(domains=["spam.example"], patterns=[r"/ads/"])
    assert f.filter(doc(RIVER, url="https://news.spam.example/x")) == (False, "blocked_domain", "spam.example")
    assert f.filter(doc(RIVER, url="https://ok.org/ads/1"))[:2] == (False, "blocked_url")
    assert f.filter(doc(RIVER, url="https://notspam.example/x")) is True
