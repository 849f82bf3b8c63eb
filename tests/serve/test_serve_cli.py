"""`lmforge serve`: binds 127.0.0.1 unless told otherwise (with a warning), clear errors."""

from __future__ import annotations

import pytest

from lmforge.cli import main
from lmforge.serve.cli import is_loopback


@pytest.fixture
def served(monkeypatch):
    pytest.importorskip("uvicorn")
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    return calls


def test_serve_binds_loopback_by_default(served, tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 0
    (app, kw), = served
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8600 and app.state.folder.root == tmp_path.resolve()
    out, err = capsys.readouterr()
    assert "http://127.0.0.1:8600/" in out and "warning" not in err


def test_another_host_warns_that_there_is_no_authentication(served, tmp_path, capsys):
    assert main(["serve", str(tmp_path), "--host", "0.0.0.0", "--port", "9001"]) == 0
    assert served[0][1] == {"host": "0.0.0.0", "port": 9001, "log_level": "warning"}
    err = capsys.readouterr().err
    assert "warning" in err and "no authentication" in err


@pytest.mark.parametrize("args, message", [
    (["/no/such/folder"], "no such folder"), (["--port", "0"], "--port"), (["--max-generations", "0"], "--max-generations"),
])
def test_bad_arguments_are_one_line_errors(served, tmp_path, capsys, args, message):
    if args[0].startswith("--"):
        args = [str(tmp_path), *args]
    assert main(["serve", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_without_the_serve_extra_the_error_says_what_to_install(without_module, tmp_path, capsys):
    without_module("fastapi")
    assert main(["serve", str(tmp_path)]) == 1
    assert "pip install 'lmforge[serve]'" in capsys.readouterr().err


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
                                            ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback
