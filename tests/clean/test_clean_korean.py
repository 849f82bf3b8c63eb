"""Korean with Korean settings: real pages (LibreOffice's Korean help, from tests/e2e/data/ko-site) that an
English-only rule would drop pass with the document's language."""

from pathlib import Path

import pyarrow.parquet as pq

from lmforge.clean.document import Document
from lmforge.clean.extract import extract_text
from lmforge.clean.steps import step_class
from lmforge.clean.steps.language import LanguageStep
from lmforge.clean.words import word_tokens
from lmforge.config import config_from_dict
from lmforge.rundir import RunDir

# Two real pages of LibreOffice's Korean help, from the Korean demo test's site (licence in its README).
SITE = Path(__file__).parents[1] / "e2e" / "data" / "ko-site" / "ko" / "text"
PAGES = {"collab.html": SITE / "shared" / "guide" / "collab.html",
         "translation.html": SITE / "sbasic" / "guide" / "translation.html"}
RULES = ["gopher_repetition", "gopher_quality", "c4", "fineweb"]


def korean_text(name: str) -> str:
    return extract_text(PAGES[name].read_text(encoding="utf-8"))


def korean_folder(root: Path) -> Path:
    """A folder holding just the two pages, as an html input."""
    import shutil

    root.mkdir(parents=True)
    for name, path in PAGES.items():
        shutil.copyfile(path, root / name)
    return root


def test_real_korean_pages_pass_with_korean_settings_and_not_with_english_ones():
    for name in ("collab.html", "translation.html"):
        doc = Document("d", name, "ko", korean_text(name))
        assert LanguageStep(None).filter(doc) is not True  # the default keeps English only
        assert doc.language == "ko" and doc.language_score > 0.9
        for rule in RULES:
            assert step_class(rule)().filter(Document("d", name, "ko", doc.text, language="ko")) is True, rule
        english = step_class("gopher_quality")().filter(Document("d", name, "ko", doc.text, language="en"))
        assert english[:2] == (False, "stop_words"), english  # Gopher's English stop words are not there


def test_korean_words_are_eojeol_and_punctuation():
    assert word_tokens("서울은 대한민국의 수도입니다.", "ko") == ["서울은", "대한민국의", "수도입니다", "."]


def test_korean_mean_word_length_has_its_own_bound():
    text = " ".join(["그 집은 앞 길 옆에 큰 돌이 있고 작은 새가 살 수 있다."] * 20)  # words of one or two syllables
    assert step_class("gopher_quality")().filter(Document("d", "u", "s", text, language="ko")) is True
    assert step_class("gopher_quality")().filter(Document("d", "u", "s", text, language="en"))[1] == "mean_word_length"


def test_a_korean_run_keeps_the_korean_pages(tmp_path):
    from lmforge.clean.pipeline import run_stage

    cfg = config_from_dict({"clean": {"inputs": [{"path": str(korean_folder(tmp_path / "ko")), "format": "html",
                                                  "source": "ko"}],
                                      "language": {"languages": ["ko"]}, "c4": {"curly_bracket": False}}})
    stats = run_stage(cfg, RunDir(tmp_path / "run"))
    docs = pq.read_table(tmp_path / "run" / "docs").to_pylist()
    assert stats["docs"] == 2 and {d["language"] for d in docs} == {"ko"}
    assert all("공동 작업" in d["text"] or "번역" in d["text"] for d in docs)


def test_kiwi_splits_korean_into_morphemes():
    assert word_tokens("서울은 대한민국의 수도입니다.", "ko", korean="kiwi")[:4] == ["서울", "은", "대한민국", "의"]


def test_lingua_backend_identifies_korean_and_english():
    from clean_texts import KOREAN, RIVER

    from lmforge.clean.config import LanguageStep as Settings

    step = LanguageStep(Settings(languages=["ko"], backend="lingua"))
    doc = Document("d", "u", "s", KOREAN)
    assert step.filter(doc) is True and doc.language == "ko" and doc.language_score > 0.65
    assert step.filter(Document("d", "u", "s", RIVER))[:2] == (False, "wrong_language")


def test_missing_optional_backends_say_how_to_install(without_module):
    import pytest

    from lmforge.clean import words
    from lmforge.clean.steps import language
    from lmforge.errors import LmforgeError

    words._kiwi.cache_clear()
    language._lingua.cache_clear()
    without_module("kiwipiepy")
    without_module("lingua")
    try:
        with pytest.raises(LmforgeError, match=r"lmforge\[korean\]"):
            word_tokens("서울은", "ko", korean="kiwi")
        with pytest.raises(LmforgeError, match=r"lmforge\[lingua\]"):
            language.identify_language("서울은", "lingua")
    finally:
        words._kiwi.cache_clear()
        language._lingua.cache_clear()


def test_a_crawl_and_korean_files_are_cleaned_together_each_with_its_language(tmp_path):
    """The shape of configs/demo-ko.toml: this run's crawl (English) plus Korean HTML files."""
    from clean_texts import RIVER, page, paragraphs_html
    from test_clean_pipeline import write_warc

    from lmforge.clean.pipeline import run_stage

    rd = RunDir(tmp_path / "run")
    rd.crawl.mkdir(parents=True)
    write_warc(rd.crawl / "crawl-00000.warc.gz",
               [("https://example.com/river", "text/html", page("River", paragraphs_html(RIVER)).encode())])
    cfg = config_from_dict({"clean": {"read_crawl": True, "inputs": [{"path": str(korean_folder(tmp_path / "ko")), "format": "html",
                                                                      "source": "ko"}],
                                      "language": {"languages": ["en", "ko"]}, "c4": {"curly_bracket": False}}})
    stats = run_stage(cfg, rd)
    docs = pq.read_table(rd.docs).to_pylist()
    assert sorted((d["source"], d["language"]) for d in docs) == [("ko", "ko"), ("ko", "ko"), ("web", "en")]
    assert stats["sources"]["web"]["docs"] == 1 and stats["sources"]["ko"]["docs"] == 2
