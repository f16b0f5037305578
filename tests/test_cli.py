"""The CLI against a real local server: the README's walk-through, exit codes, 80-column tables, no reprs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelbay.cli import app
from tests.onnx_models import make_mlp

SHARED = str(Path(__file__).resolve().parents[1] / "shared")
REPR = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\['|\{'")


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The real command in a subprocess: this tree's modelbay, the test's saved key."""
    env = {**os.environ, "PYTHONPATH": SHARED, "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "modelbay", *args], capture_output=True, text=True, timeout=120, env=env, input=stdin
    )


@pytest.fixture
def run(server):
    runner = CliRunner()

    def _run(*args: str, ok: bool = True, columns: int = 200):
        r = runner.invoke(app, ["--url", server, *args], catch_exceptions=False, env={"COLUMNS": str(columns)})
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


def test_show_bare_name_is_what_the_server_serves(run, client, mlp_path, tmp_path):
    """`show iris` answers what inference serves as `iris`: its production alias, not the latest version."""
    run("push", str(mlp_path), "--name", "iris")
    assert json.loads(run("--json", "show", "iris").output)["version"] == 1
    run("push", str(make_mlp(tmp_path / "v2.onnx", seed=2)), "--name", "iris")
    assert json.loads(run("--json", "show", "iris").output)["version"] == 2  # no production: the latest
    run("alias", "set", "iris", "production", "1")
    r = run("show", "iris")
    assert json.loads(r.stdout)["version"] == 1 == client.predict("iris", None, [[1, 2, 3, 4]]).version
    assert "iris → version 1 (alias production)" in r.stderr


def test_options_work_before_and_after_the_command(run, server, mlp_path):
    run("push", str(mlp_path), "--name", "m", "--alias", "production")
    runner = CliRunner()
    for args in (
        ["--json", "--url", server, "models"],
        ["models", "--json", "--url", server],
        ["--url", "http://127.0.0.1:9", "models", "--url", server, "--json"],
    ):
        r = runner.invoke(app, args, catch_exceptions=False)
        assert r.exit_code == 0, (args, r.output)
        assert json.loads(r.stdout)[0]["name"] == "m"
    r = runner.invoke(app, ["alias", "list", "m", "--url", server, "--json"], catch_exceptions=False)
    assert json.loads(r.stdout) == {"production": 1}
    r = runner.invoke(
        app, ["models", "--url", server, "--api-key", "mb_000000000000_" + "x" * 40], catch_exceptions=False
    )
    assert r.exit_code == 2 and "401" in r.output  # the key given after the command is the one sent


def test_exit_codes_two_for_the_callers_mistakes_one_for_failures(run, server, client, mlp_path, tmp_path):
    run("push", str(mlp_path), "--name", "m", "--alias", "production")
    r = cli("--url", server, "alias", "set", "m", "production", "9")
    assert r.returncode == 2 and "404" in r.stderr and "no version 9" in r.stderr
    r = cli("--url", server, "delete", "m", "1", "--yes")
    assert r.returncode == 2 and "409" in r.stderr and "production" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = cli("--url", server, "push", str(mlp_path), "--name", "m", "--metadata", str(bad))
    assert r.returncode == 2 and "--metadata" in r.stderr and "is not JSON" in r.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"task": "painter"}')
    r = cli("--url", server, "push", str(mlp_path), "--name", "m", "--metadata", str(wrong))
    assert r.returncode == 2 and "task" in r.stderr
    r = cli("--url", server, "models", "--no-such-flag")
    assert r.returncode == 2
    r = cli("--url", server, "predict", "m", "--data", "@" + str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "missing.json" in r.stderr
    r = cli("--url", "http://127.0.0.1:9", "models")
    assert r.returncode == 1 and "cannot reach" in r.stderr and "Traceback" not in r.stderr
    r = cli("--url", "http://127.0.0.1:9", "--json", "models")
    assert r.returncode == 1 and json.loads(r.stderr)["code"] == "unreachable" and r.stdout == ""
    assert [v.version for v in client.versions("m")] == [1]  # nothing the refused calls touched


def test_human_output_has_no_python_reprs(run, mlp_path):
    r = run("push", str(mlp_path), "--name", "x")
    r = run("alias", "set", "x", "production", "1")
    assert "(was -, set by " in r.output and not REPR.search(r.output), r.output
    r = run("keys", "whoami")
    assert "root" in r.output and not REPR.search(r.output), r.output
    for args in (
        ("keys", "list"),
        ("alias", "history", "x", "production"),
        ("audit",),
        ("versions", "x"),
        ("models",),
        ("tenants", "list"),
        ("metrics",),
        ("metrics", "x"),
    ):
        out = run(*args).output
        assert not REPR.search(out), (args, out)


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_every_listing_fits_80_columns(run, mlp_path, client):
    run(
        "push",
        str(mlp_path),
        "--name",
        "a-model-with-a-long-name",
        "--alias",
        "production",
        "--description",
        "a description long enough to need cutting at eighty columns, and then some more",
    )
    run("push", str(mlp_path), "--name", "a-model-with-a-long-name", "--alias", "staging")
    client.create_key(["invoke", "manage"], name="a key with a long descriptive name for the table")
    listings = {
        ("models",): 1,
        ("versions", "a-model-with-a-long-name"): 2,
        ("alias", "list", "a-model-with-a-long-name"): 2,
        ("alias", "history", "a-model-with-a-long-name", "production"): 1,
        ("keys", "list"): len(client.keys()),
        ("tenants", "list"): None,
        ("audit",): None,
        ("metrics",): 1,
        ("metrics", "a-model-with-a-long-name", "--by-version"): 1,
    }
    for args, rows in listings.items():
        lines = run(*args, columns=80).output.rstrip("\n").splitlines()
        assert all(len(line) <= 80 for line in lines), (args, lines)
        body = [line for line in lines[3:] if line.strip()]  # title, header, rule
        if rows is not None:
            assert len(body) == rows, (args, lines)  # one line per row: nothing wraps
    out = run("versions", "a-model-with-a-long-name", columns=80).output
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", out)) == 2 and "…" in out  # dates whole, text cut
    assert "production" in out and "staging" in out
    keys = run("keys", "list", columns=80).output
    assert all(k.key_id in keys for k in client.keys(None))  # ids whole: a user copies them


def test_user_text_is_not_read_as_markup(run, mlp_path):
    run("push", str(mlp_path), "--name", "m", "--description", "takes x[batch,4] [bold]rows[/]")
    assert "x[batch,4] [bold]rows[/]" in run("versions", "m").output
    for command in ("push", "convert"):
        assert "[batch,100]" in run(command, "--help").output


def test_plain_onnx_push_skips_conversion_in_typed_stages(client, mlp_path):
    from modelbay.convert.pipeline import Stage, Status, push

    events = []
    result = push(client, mlp_path, name="plain", events=events.append)
    assert result.gate is None and result.manifest.version == 1
    final = {e.stage: e.status for e in events}
    assert final == {
        Stage.CONVERT: Status.SKIPPED,
        Stage.QUANTIZE: Status.SKIPPED,
        Stage.GATE: Status.SKIPPED,
        Stage.UPLOAD: Status.DONE,
        Stage.REGISTER: Status.DONE,
    }


def _imports(path: Path, package: str) -> set[str]:
    """Every module a file imports (relative imports made absolute; 'from a import b' gives a and a.b)."""
    import ast

    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join([*base, *([node.module] if node.module else [])])
            out |= {mod, *(f"{mod}.{a.name}" for a in node.names)}
    return out


def test_only_the_cli_imports_the_cli_and_the_core_imports_no_client_or_tui():
    root = Path(SHARED)
    tui = root.parent / "tui"
    checked = 0
    for base, path in [(root, p) for p in (root / "modelbay").rglob("*.py")] + [
        (tui, p) for p in (tui / "modelbay_tui").rglob("*.py")
    ]:
        rel = path.relative_to(base).with_suffix("")
        package = ".".join(rel.parts[:-1])
        imported = _imports(path, package)
        if rel.parts[:2] == ("modelbay", "cli") or rel.parts == ("modelbay", "__main__"):
            continue  # the package itself, and `python -m modelbay`, its entry point
        checked += 1
        assert not any(m == "modelbay.cli" or m.startswith("modelbay.cli.") for m in imported), path
        if rel.parts[0] == "modelbay":  # the core: no HTTP client, no terminal UI
            assert not any(m == "modelbay.client" or m.startswith("modelbay_tui") for m in imported), path
    for path in (root.parent / "functions").rglob("*.py"):  # the Lambda entry points: adapters of the core
        assert not any(m.startswith("modelbay.cli") or m.startswith("modelbay_tui") for m in _imports(path, "")), path
        checked += 1
    assert checked > 80


_ENV = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
# the one reader of the process environment (Lambda-specific adapters would join it here)
ENV_READERS = {("modelbay", "settings")}


def _touches_env(node: object) -> bool:
    import ast

    if isinstance(node, ast.Attribute):
        return node.attr in _ENV and isinstance(node.value, ast.Name) and node.value.id == "os"
    if isinstance(node, ast.ImportFrom):
        return node.module == "os" and bool({a.name for a in node.names} & {*_ENV, "*"})
    return False


def _env_uses(path: Path) -> list[int]:
    """Lines that touch the process environment: os.environ / os.getenv ..., or such names imported from os."""
    import ast

    return sorted(n.lineno for n in ast.walk(ast.parse(path.read_text())) if _touches_env(n))


def test_only_the_settings_module_reads_the_environment(tmp_path):
    root = Path(SHARED)
    readers = {}
    for path in (root / "modelbay").rglob("*.py"):
        uses = _env_uses(path)
        if uses:
            readers[path.relative_to(root).with_suffix("").parts] = uses
    assert set(readers) == ENV_READERS, readers  # and settings does read it: the check sees what it looks for
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom os import getenv\nx = os.environ.get('A')\ny = os.getenv('B')\n")
    assert _env_uses(probe) == [2, 3, 4]
