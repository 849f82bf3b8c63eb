"""`lmforge serve`: binds 127.0.0.1 unless told otherwise (with a warning), clear errors."""

from __future__ import annotations

import socket

import pytest

from lmforge.cli import main
from lmforge.serve.cli import is_loopback


@pytest.fixture
def served(monkeypatch):
    pytest.importorskip("uvicorn")
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr("lmforge.serve.cli.check_can_listen", lambda host, port: None)  # 8600 may be taken here
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
    (["/no/such/folder"], "no such folder"), (["--port", "0"], "--port"), (["--port", "99999"], "--port"),
    (["--port", "-5"], "--port"), (["--max-generations", "0"], "--max-generations"), (["/etc/hostname"], "not a folder"),
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


def test_a_port_in_use_is_one_line(tmp_path, capsys):
    pytest.importorskip("uvicorn")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["serve", str(tmp_path), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"port {port} of 127.0.0.1 is in use" in err and "--port" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("host", ["no.such.host.invalid", "999.1.1.1", ""])
def test_a_host_this_machine_lacks_is_one_line(tmp_path, capsys, host):
    pytest.importorskip("uvicorn")
    assert main(["serve", str(tmp_path), "--host", host]) == 1
    err = capsys.readouterr().err
    assert f"--host {host}" in err and "127.0.0.1" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("port", ["abc", "1e3", "8600.5"])
def test_a_port_that_is_not_a_number_is_argparses_error(tmp_path, capsys, port):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(tmp_path), "--port", port])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid int value" in err.splitlines()[-1] and "Traceback" not in err
