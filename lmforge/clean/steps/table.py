"""docs/clean.md's table of every step's settings, generated from the config dataclasses'
attribute docstrings (``python -m lmforge.clean.steps --table``)."""

from __future__ import annotations

from dataclasses import fields

from lmforge.clean.steps import LANGUAGE_DEFAULTS


def setting_rows() -> list[tuple[str, str, str, str]]:
    """(step, setting, default, what it does and its source) for every step's settings, from the
    config dataclasses' attribute docstrings: docs/clean.md's table."""
    import ast
    import inspect

    from lmforge.clean import config

    tables = {"url": config.URLStep, "extract": config.ExtractStep, "language": config.LanguageStep,
              "words": config.WordsConfig, "gopher_repetition": config.GopherRepetitionStep,
              "gopher_quality": config.GopherQualityStep, "c4": config.C4Step, "fineweb": config.FineWebStep,
              "pii": config.PIIStep}
    rows = []
    for step, cls in tables.items():
        docs = _attribute_docs(ast.parse(inspect.getsource(cls)))
        defaults = cls()
        for f in fields(cls):
            rows.append((step, f.name, _toml(getattr(defaults, f.name)), " ".join(docs.get(f.name, "").split())))
        for lang, overrides in LANGUAGE_DEFAULTS.get(step, {}).items():
            rows += [(step, f"by_language.{lang}.{k}", _toml(v), "built-in default for this language")
                     for k, v in overrides.items()]
    return rows


def _attribute_docs(tree) -> dict[str, str]:
    import ast

    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = after.value.value
    return docs


def _toml(value) -> str:
    from lmforge.config import _toml_value

    return _toml_value(value)


def table() -> str:
    """The Markdown table of every step's settings (``python -m lmforge.clean.steps --table``)."""
    lines = ["| step | setting | default | what it does (source) |", "|---|---|---|---|"]
    for step, name, default, doc in setting_rows():
        lines.append(f"| {step} | `{name}` | `{default}` | {doc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- settings table: begin -->", "<!-- settings table: end -->"


def with_table(markdown: str) -> str:
    """``markdown`` with the current :func:`table` between its BEGIN and END markers."""
    start, end = markdown.index(BEGIN) + len(BEGIN), markdown.index(END)
    return markdown[:start] + "\n" + table() + markdown[end:]
