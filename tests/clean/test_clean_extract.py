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
