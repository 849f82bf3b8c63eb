"""Main text out of HTML with trafilatura (Barbaresi 2021), precision first.

Bytes are decoded beforehand by :func:`lmforge.collect.charset.decode_html` (HTTP header,
``<meta charset>``, then charset-normalizer).

trafilatura drops navigation, menus, footers, cookie banners and comments; we keep tables and
give it ``<pre>`` blocks as plain text so code keeps its line breaks (otherwise the spans of a
syntax highlighter are joined into one line).
"""

from __future__ import annotations

import re
import signal
import threading
from contextlib import contextmanager

HTML_TYPES = ("text/html", "application/xhtml+xml")
# Lines with no word in them that trafilatura's text output leaves: an empty list item ("-"),
# a table rule ("|---|"), a lone bullet or separator. Dots stay: "..." is a line of Python examples.
_SYMBOL_LINE = re.compile(r"^[ \t]*[-–—_=*•·|~+](?:[ \t]*[-–—_=*•·|~+])*[ \t]*$\n?", re.MULTILINE)


class ExtractTimeout(Exception):
    """A page's extraction ran past its time limit."""


def extract_text(html: str, url: str | None = None, fast: bool = False, timeout: float | None = None) -> str:
    """The main text of ``html`` (paragraphs, headings, lists, tables, code), or '' if none.

    ``fast`` skips trafilatura's comparison with its readability and jusText fallbacks;
    ``timeout`` (seconds) raises :class:`ExtractTimeout` when the page takes longer.

    >>> extract_text("<html><body><nav>Home | About</nav><article><p>" + "Real words here. " * 20
    ...              + "</p></article></body></html>").startswith("Real words here.")
    True
    """
    import trafilatura

    with _time_limit(timeout):
        tree = _parse(html)
        if tree is None:
            return ""
        text = trafilatura.extract(tree, url=url, include_comments=False, include_tables=True,
                                   favor_precision=True, fast=fast, deduplicate=False, output_format="txt")
    return (text or "").strip()


def clean_lines(text: str) -> str:
    """``text`` without the lines made only of dashes, bullets, bars and dots.

    >>> clean_lines("Intro\\n-\\n- item\\n|---|---|\\nEnd.")
    'Intro\\n- item\\nEnd.'
    """
    return _SYMBOL_LINE.sub("", text).strip()


@contextmanager
def _time_limit(seconds: float | None):
    """Raise ExtractTimeout in this block after ``seconds`` of this process's CPU time (a
    profiling timer's signal: no thread or child to clean up, and a loaded machine does not
    make a page time out, as wall-clock limits do). Where signals cannot be used (not the main
    thread), the block runs without a limit."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise ExtractTimeout()

    previous = signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


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
