"""The CLI against a real local server: the README's push / list / alias / rollback walk-through."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modelbay.cli import app
from tests.onnx_models import make_mlp


@pytest.fixture
def run(server, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr("modelbay.cli.out", Console(width=200))  # tables unwrapped, as in a wide terminal
    runner = CliRunner()

    def _run(*args: str, ok: bool = True):
        r = runner.invoke(app, ["--url", server, *args], catch_exceptions=False)
        if ok:
            assert r.exit_code == 0, r.output
        return r

    return _run


def test_readme_walkthrough(run, mlp_path, tmp_path):
    r = run("push", str(mlp_path), "--name", "iris", "--alias", "production", "--description", "first")
    assert "registered iris version 1" in " ".join(r.output.split())
    run("push", str(make_mlp(tmp_path / "v2.onnx", seed=2)), "--name", "iris")
    models = json.loads(run("--json", "models").output)
    assert [(m["name"], m["latest_version"], m["aliases"]) for m in models] == [("iris", 2, {"production": 1})]
    table = run("versions", "iris").output
    assert "first" in table and "production" in table
    run("alias", "set", "iris", "production", "2")
    history = json.loads(run("--json", "alias", "history", "iris", "production").output)["history"]
    assert [(e["from"], e["to"]) for e in history] == [(None, 1), (1, 2)]
    r = run("rollback", "iris", "production")
    assert "→ 1" in r.output
    assert json.loads(run("--json", "show", "iris:production").output)["version"] == 1
    assert json.loads(run("--json", "show", "iris@2").output)["version"] == 2


def test_cli_errors_are_clear(run, server, mlp_path):
    import subprocess
    import sys

    run("push", str(mlp_path), "--name", "m", "--alias", "production")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "modelbay", "--url", server, *args],
                              capture_output=True, text=True, timeout=60)

    r = cli("alias", "set", "m", "production", "9")
    assert r.returncode == 1 and "404" in r.stderr and "no version 9" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("delete", "m", "1", "--yes")
    assert r.returncode == 1 and "409" in r.stderr and "production" in r.stderr
    r = subprocess.run([sys.executable, "-m", "modelbay", "--url", "http://127.0.0.1:9", "models"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot reach" in r.stderr
