from clean_texts import BREAD, RIVER, page, paragraphs_html

from lmforge.clean.extract import extract_text


def test_extraction_keeps_the_article_and_drops_boilerplate():
    text = extract_text(page("The river", paragraphs_html(RIVER)))
    assert "The river that runs through the old town has shaped the lives of its people" in text
    assert "the school takes its pupils to read them and to learn how the work was done." in text
    for boilerplate in ("News Menu", "Shop Menu", "Accept all cookies", "All rights reserved",
                        "Privacy policy", "Ten tips for gardeners"):
        assert boilerplate not in text


def test_extraction_keeps_paragraph_breaks_and_code_lines():
    code = ('<div class="highlight"><pre><span class="k">def</span> <span class="nf">all</span>(iterable):\n'
            '    <span class="k">for</span> element <span class="ow">in</span> iterable:\n'
            '        <span class="k">return</span> False</pre></div>')
    text = extract_text(page("Bread", paragraphs_html(BREAD) + code))
    assert "def all(iterable):\n    for element in iterable:\n        return False" in text
    assert "in the morning.\nWhen the loaf" in text  # one line per paragraph


def test_empty_or_boilerplate_only_page_gives_empty_text():
    assert extract_text("") == ""
    assert extract_text(page("Nothing", "").replace("<h1>Nothing</h1>", "")) == ""  # menus, banner, footer only


def pathological_page(n: int = 5000) -> str:
    """Thousands of tiny sibling blocks: trafilatura's time grows with their square (30,000 of
    them, 1 MB, took 259 s on a 2-core machine; 5,000 take seconds)."""
    return "<html><body>" + "<div><p>word word, word.</p></div>" * n + "</body></html>"


def test_a_page_over_its_time_limit_raises_and_the_next_one_is_extracted():
    import time

    import pytest

    from lmforge.clean.extract import ExtractTimeout

    t0 = time.perf_counter()
    with pytest.raises(ExtractTimeout):
        extract_text(pathological_page(), timeout=0.2)
    assert time.perf_counter() - t0 < 5
    assert "The river that runs" in extract_text(page("The river", paragraphs_html(RIVER)), timeout=5)


def test_a_slow_page_is_dropped_as_extract_timeout_and_the_worker_goes_on(tmp_path):
    import pyarrow.parquet as pq

    from lmforge.clean.pipeline import run_stage
    from lmforge.config import config_from_dict
    from lmforge.rundir import RunDir

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a_slow.html").write_text(pathological_page(), encoding="utf-8")
    (tmp_path / "site" / "b_river.html").write_text(page("The river", paragraphs_html(RIVER)), encoding="utf-8")
    cfg = config_from_dict({"clean": {"inputs": [{"path": str(tmp_path / "site"), "format": "html"}],
                                      "extract": {"timeout_s": 0.2, "timeout_s_per_mb": 0.0}}})
    stats = run_stage(cfg, RunDir(tmp_path / "run"))
    rejects = pq.read_table(tmp_path / "run" / "rejects").to_pylist()
    assert [(r["step"], r["reason"]) for r in rejects] == [("extract", "extract_timeout")]
    assert stats["steps"]["extract"]["dropped_extract_timeout"] == 1 and stats["docs"] == 1


def test_symbol_only_lines_are_removed_from_the_extracted_text():
    from lmforge.clean.extract import clean_lines

    assert clean_lines("Title\n-\n- a real item\n|---|---|\n* * *\n...\nEnd.") == "Title\n- a real item\n...\nEnd."


def test_fallbacks_run_only_when_the_first_pass_finds_little(monkeypatch):
    import lmforge.clean.extract as extract

    calls = []
    real = extract._trafilatura

    def counting(tree, url, fallbacks):
        calls.append(fallbacks)
        return real(tree, url, fallbacks)

    monkeypatch.setattr(extract, "_trafilatura", counting)
    long_page = page("The river", paragraphs_html(RIVER))
    assert len(extract_text(long_page)) >= extract.FALLBACK_CHARS and calls == [False]
    calls.clear()
    short_page = page("Bread", paragraphs_html("Baking bread at home is easier than most people think."))
    assert len(extract_text(short_page)) < extract.FALLBACK_CHARS and calls == [False, True]
    calls.clear()
    extract_text(short_page, fast=True)
    assert calls == [False]


def test_inline_spans_are_unwrapped_block_spans_kept():
    import lxml.html

    from lmforge.clean.extract import _parse

    html = ('<html><body><p>Call <code class="literal"><span class="pre">open()</span></code> or '
            '<a href="#x"><span class="std std-ref">the guide</span></a>.'
            '<span class="m-iconMember">[members]</span></p></body></html>')
    tree = _parse(html)
    spans = [s.get("class") for s in tree.iter("span")]
    assert spans == ["m-iconMember"]  # only the span directly in the paragraph is left
    assert tree.text_content() == lxml.html.fromstring(html).text_content()  # no text lost
