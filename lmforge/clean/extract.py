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


FALLBACK_CHARS = 250
"""A first pass that finds less text than this is redone with trafilatura's fallbacks (trafilatura's
own ``MIN_EXTRACTED_SIZE``, below which it calls an extraction short). On the demo crawl the
fallbacks changed the text of no page whose first pass had found any text."""


def extract_text(html: str, url: str | None = None, fast: bool = False, timeout: float | None = None) -> str:
    """The main text of ``html`` (paragraphs, headings, lists, tables, code), or '' if none.

    Two passes: trafilatura alone first; when that finds less than :data:`FALLBACK_CHARS`
    characters, trafilatura again with its readability and jusText fallbacks, whose text wins
    if longer (trafilatura would otherwise run the fallbacks on every page, for the few where
    its own pass misses the body). ``fast`` keeps the first pass only; ``timeout`` (seconds)
    raises :class:`ExtractTimeout` when the page takes longer.

    >>> extract_text("<html><body><nav>Home | About</nav><article><p>" + "Real words here. " * 20
    ...              + "</p></article></body></html>").startswith("Real words here.")
    True
    """
    with _time_limit(timeout):
        tree = _parse(html)
        if tree is None:
            return ""
        text = _trafilatura(tree, url, fallbacks=False)
        if not fast and len(text) < FALLBACK_CHARS:
            second = _trafilatura(_parse(html), url, fallbacks=True)  # the first pass changed the tree
            text = second if len(second) > len(text) else text
    return text


def _trafilatura(tree, url: str | None, fallbacks: bool) -> str:
    import trafilatura

    text = trafilatura.extract(tree, url=url, include_comments=False, include_tables=True, favor_precision=True,
                               fast=not fallbacks, deduplicate=False, output_format="txt")
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
    _unwrap_inline_spans(tree)
    return tree


_INLINE = frozenset(("a", "abbr", "b", "cite", "code", "dfn", "dt", "em", "i", "kbd", "q", "samp", "small",
                     "span", "strong", "sub", "sup", "tt", "u", "var"))


def _unwrap_inline_spans(tree) -> None:
    """Replace ``<span>``s inside inline markup (``<code><span class="pre">``, a link's label, a
    definition's signature) by their text. trafilatura drops spans at its end anyway, but first
    tests each against its boilerplate patterns: on API documentation, where every name is in
    such spans, that took a quarter of its time. Spans directly in a paragraph or a block keep
    their markup, so a labelled block (a paywall notice, a share bar) is still recognised."""
    spans = [s for s in tree.iter("span") if s.getparent() is not None and s.getparent().tag in _INLINE]
    for span in spans:
        span.drop_tag()


def _flatten_code_blocks(tree) -> None:
    """Replace the markup inside ``<pre>`` by its text, and drop Sphinx/MkDocs permalink marks (¶)."""
    for pre in tree.iter("pre"):
        text = pre.text_content()
        for child in list(pre):
            pre.remove(child)
        pre.text = text
    for a in tree.xpath("//a[contains(concat(' ', @class, ' '), ' headerlink ')]"):
        a.drop_tree()
