"""A token view of a text, like the tiktokenizer web app: each token shaded in turn, its id, and
the count. ``show_tokens`` is the data (the web UI reuses it); ``render_tokens`` the terminal text."""

from __future__ import annotations

# Background colours cycled over tokens (ANSI 256-colour pastels, readable with black text).
_COLOURS = (153, 223, 194, 218, 229, 189)


def show_tokens(tokenizer, text: str, allowed_special="all") -> dict:
    """``{"text", "count", "ids", "tokens": [{"id", "text", "bytes"}]}``.

    A token's ``text`` is its bytes as UTF-8 where they decode alone; a token holding part of a
    multi-byte character shows as its bytes in hex escapes (e.g. ``\\xec\\x95``), as tiktokenizer does.
    """
    ids = tokenizer.encode(text, allowed_special=allowed_special)
    tokens = []
    for i in ids:
        raw = tokenizer.token_bytes(i)
        try:
            shown = raw.decode("utf-8")
        except UnicodeDecodeError:
            shown = "".join(f"\\x{b:02x}" for b in raw)
        tokens.append({"id": i, "text": shown, "bytes": list(raw)})
    return {"text": text, "count": len(ids), "ids": ids, "tokens": tokens}


def _visible(s: str) -> str:
    """Make whitespace a token is made of visible (a newline token would otherwise vanish)."""
    return s.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def render_tokens(view: dict, colour: bool) -> str:
    """The token view as terminal text: shaded tokens (or ``[tok]`` brackets), ids, count."""
    if colour:
        parts = [f"\x1b[48;5;{_COLOURS[k % len(_COLOURS)]}m\x1b[30m{_visible(t['text'])}\x1b[0m"
                 for k, t in enumerate(view["tokens"])]
    else:
        parts = [f"[{_visible(t['text'])}]" for t in view["tokens"]]
    return "\n".join(["".join(parts), str(view["ids"]), f"Token count: {view['count']}"])
