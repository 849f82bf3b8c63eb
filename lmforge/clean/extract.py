"""Main text out of HTML with trafilatura (Barbaresi 2021), precision first.

Bytes are decoded beforehand by :func:`lmforge.collect.charset.decode_html` (HTTP header,
``<meta charset>``, then charset-normalizer).

trafilatura drops navigation, menus, footers, cookie banners and comments; we keep tables and
give it ``<pre>`` blocks as plain text so code keeps its line breaks (otherwise the spans of a
syntax highlighter are joined into one line).
"""

from __future__ import annotations

HTML_TYPES = ("text/html", "application/xhtml+xml")


def extract_text(html: str, url: str | None = None, fast: bool = False) -> str:
    """The main text of ``html`` (paragraphs, headings, lists, tables, code), or '' if none.

    ``fast`` skips trafilatura's comparison with its readability and jusText fallbacks.

    >>> extract_text("<html><body><nav>Home | About</nav><article><p>" + "Real words here. " * 20
    ...              + "</p></article></body></html>").startswith("Real words here.")
    True
    """
    import trafilatura

    tree = _parse(html)
    if tree is None:
        return ""
    text = trafilatura.extract(tree, url=url, include_comments=False, include_tables=True,
                               favor_precision=True, fast=fast, deduplicate=False, output_format="txt")
    return (text or "").strip()


def _parse(html: str):
    import lxml.etree
    import lxml.html

    try:
        tree = lxml.html.fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        # ValueError: a str with an XML encoding declaration; parse its bytes instead.
        try:
            tree = lxml.html.fromstring(html.encode("utf-8", errors="replace"))
        except (lxml.etree.ParserError, ValueError):
            return None
    _flatten_code_blocks(tree)
    return tree


def _flatten_code_blocks(tree) -> None:
    """Replace the markup inside ``<pre>`` by its text, and drop Sphinx/MkDocs permalink marks (¶)."""
    for pre in tree.iter("pre"):
        text = pre.text_content()
        for child in list(pre):
            pre.remove(child)
        pre.text = text
    for a in tree.xpath("//a[contains(concat(' ', @class, ' '), ' headerlink ')]"):
        a.drop_tree()
