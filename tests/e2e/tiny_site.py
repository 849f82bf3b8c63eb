"""A tiny website for end-to-end tests, served on 127.0.0.1 by a thread.

Pages are made of seeded, grammatical English sentences so that the language and quality
filters keep them; one page is disallowed by robots.txt and one is a copy of another.
"""

from __future__ import annotations

import contextlib
import html
import random
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SUBJECTS = ["The old lighthouse keeper", "A curious student", "The river", "Our small village", "The library",
            "A patient gardener", "The morning train", "Every careful baker", "The mountain road", "A young painter"]
VERBS = ["watched", "remembered", "carried", "described", "followed", "repaired", "painted", "measured",
         "welcomed", "explained"]
OBJECTS = ["the quiet harbour at dawn", "a basket of fresh apples", "the long history of the valley",
           "the stars above the northern hills", "a letter from a distant friend", "the rules of the old game",
           "the sound of rain on the roof", "a map of the forgotten island", "the recipe for brown bread",
           "the colours of the autumn forest"]
ENDINGS = ["before the sun went down.", "with great care and patience.", "while the children were asleep.",
           "because nobody else had the time.", "and then wrote everything down in a notebook.",
           "for the people of the town.", "as the wind grew stronger.", "without saying a single word."]


def paragraph(rng: random.Random, sentences: int = 6) -> str:
    return " ".join(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ENDINGS)}"
                    for _ in range(sentences))


def page(title: str, paragraphs: list[str], links: list[str]) -> str:
    nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title></head><body>"
            f"<nav><ul>{nav}</ul></nav><main><article><h1>{title}</h1>{body}</article></main>"
            f"<footer>Copyright the tiny site. All rights reserved.</footer></body></html>")


def build_site(root: Path, n_pages: int = 6, seed: int = 0) -> dict[str, str]:
    """Write the site under ``root``; return {path: role} for the pages that matter to tests."""
    rng = random.Random(seed)
    names = [f"page{i}.html" for i in range(1, n_pages + 1)]
    links = ["index.html", *names, "dup.html", "private/secret.html"]
    pages = {name: page(f"Story {i}", [paragraph(rng) for _ in range(5)], links) for i, name in enumerate(names, 1)}
    pages["index.html"] = page("Welcome", [paragraph(rng) for _ in range(4)], links)
    pages["dup.html"] = pages["page1.html"]
    pages["private/secret.html"] = page("Secret", [paragraph(rng) for _ in range(4)], links)
    for name, text in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    return {"private/secret.html": "disallowed", "dup.html": "duplicate of page1.html"}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(root: Path):
    """Serve ``root`` on 127.0.0.1 (ephemeral port); yield the base URL."""
    handler = lambda *a, **kw: QuietHandler(*a, directory=str(root), **kw)  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
