"""Fixtures every test package may use."""

from __future__ import annotations

import pytest


@pytest.fixture
def without_module(monkeypatch):
    """``without_module("ray")``: importing that module fails, as where it is not installed."""
    import builtins

    real_import = builtins.__import__
    blocked: set[str] = set()

    def guarded(name, *args, **kwargs):
        if name.split(".")[0] in blocked:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    return blocked.add
