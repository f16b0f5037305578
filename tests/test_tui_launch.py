"""``make run``'s launcher: a real server child process, the demo models landing while the TUI is open, and
everything stopped after quitting; from an empty HOME, as a new user meets it.

The demo models come from the shared example cache (built once per machine; the builds are not what these
tests are about). To see models land one by one while the TUI is open, the MiniLM entry of a test-local cache
is held by its build lock until the test has seen the others arrive.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelbay.client import ApiError, Client
from tests.pilot import until
from tests.servers import free_port

pytest.importorskip("textual")
pytest.importorskip("modelbay.convert.pipeline")

from textual.widgets import DataTable

from modelbay_tui import launch
from modelbay_tui.app import ModelbayApp

REPO = Path(__file__).resolve().parents[1]
_REAL_RUN = ModelbayApp.run
DEMO = ("mlp", "digits", "pii", "minilm")


def _shared_examples() -> Path:
    from modelbay.settings import Settings

    return Settings.from_env().examples_cache


# read before any test points HOME elsewhere: the machine's shared example cache
SHARED_EXAMPLES = _shared_examples()


@pytest.fixture
def empty_home(tmp_path, monkeypatch) -> Path:
    """HOME and the XDG directories in a fresh temporary folder; no key, URL or store from the environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"), ("XDG_CACHE_HOME", ".cache")):
        monkeypatch.setenv(var, str(home / sub))
    for var in ("MODELBAY_API_KEY", "MODELBAY_URL", "MODELBAY_STORE", "MODELBAY_BOOTSTRAP_KEY", "MODELBAY_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return home


def built(names=DEMO) -> dict[str, Path]:
    """The shared cache's entries of the demo examples (built here if no one has yet; a build in progress elsewhere
    is waited for)."""
    from modelbay.convert import examples
    from modelbay.convert.examples import cache

    root = SHARED_EXAMPLES
    out = {}
    for n in names:
        examples.build(n, root)
        out[n] = cache.entry(root, n, "arm64")
    return out


@contextlib.contextmanager
def held(entry: Path) -> Iterator[None]:
    """Hold an example's build lock: a seeder that wants it waits, as behind a long build."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.parent / f".{entry.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def headless(monkeypatch, script) -> dict:
    """ModelbayApp.run as the launcher calls it, headless at 80x24, driven by ``script(pilot)``."""
    seen: dict = {}

    async def auto_pilot(pilot):
        try:
            await script(pilot, seen)
            assert pilot.app.ui_errors == [], pilot.app.ui_errors
        except BaseException as e:  # the launcher must still stop its children: record, quit, re-raise after
            seen["error"] = e
        await pilot.press("q")

    def run(self, *a, **kw):
        return _REAL_RUN(self, headless=True, size=(80, 24), auto_pilot=auto_pilot)

    monkeypatch.setattr(ModelbayApp, "run", run)
    return seen


def names(app) -> list[str]:
    table = app.screen.query_one("#models", DataTable)
    return sorted(str(table.get_row_at(i)[0]) for i in range(table.row_count))


def test_make_run_from_an_empty_home(empty_home, tmp_path, monkeypatch, capfd):
    """First run: the server mints and saves a key, the TUI opens at once and the demo models land in it one by
    one while the rest build, with the time left shown; quitting mid-way stops the seeding. Second run: the saved
    key is used and the last model lands."""
    entries = built(("mlp", "digits", "pii"))
    cache = tmp_path / "examples"
    cache.mkdir()
    for entry in entries.values():
        (cache / entry.name).symlink_to(entry)
    monkeypatch.setenv("MODELBAY_EXAMPLES_CACHE", str(cache))
    from modelbay.convert.examples import cache as example_cache

    minilm = example_cache.entry(cache, "minilm", "arm64")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = tmp_path / "store"

    async def first(pilot, seen):
        app = pilot.app
        # the TUI is up while the seeding child has not even started its work
        assert app.seeding is not None and not app.seeding.finished
        seen["opened_with"] = names(app)
        await until(pilot, lambda: names(app) == ["digits", "mlp", "pii"], 300, "three demo models in the list")
        await until(pilot, lambda: app.seeding_line() and "minilm" in app.seeding_line(), 60, "minilm building")
        seen["status"] = str(app.screen.query_one("#models-status").render())
        seen["notes"] = [m for _, _, m in app.notification_log]
        seen["screen"] = app.export_text()

    with held(minilm):
        seen = headless(monkeypatch, first)
        assert launch.main(["--store", str(store), "--port", str(port)]) == 0
        if "error" in seen:
            raise seen["error"]
    assert seen["opened_with"] == []  # nothing had landed when the TUI opened
    assert "3 models" in seen["status"] and "building minilm (4/4)" in seen["status"] and "left" in seen["status"]
    assert {"mlp is ready: version 1 → production", "pii is ready: version 1 → production"} <= set(seen["notes"])
    assert all(f" {n} " in seen["screen"] for n in ("mlp", "digits", "pii"))
    assert "demo seeding was stopped" in capfd.readouterr().err
    with Client(url, timeout=2) as c, pytest.raises(ApiError) as e:
        c.models()
    assert e.value.code == "unreachable"  # quitting stopped the server
    saved = empty_home / ".config" / "modelbay" / "credentials.json"
    assert saved.is_file() and oct(saved.stat().st_mode & 0o777) == "0o600"  # the server's key, for this user
    assert not list(cache.glob(".build-*"))  # the stopped seeder left no half-built files

    (cache / minilm.name).symlink_to(built(("minilm",))["minilm"])

    async def second(pilot, seen):
        app = pilot.app
        await until(pilot, lambda: names(app) == sorted(DEMO), 300, "all four demo models")
        await until(pilot, lambda: app.seeding.finished, 60, "seeding finished")
        await until(pilot, lambda: app.seeding_line() is None, 10, "the status line without seeding")
        seen["notes"] = [m for _, _, m in app.notification_log]
        seen["screen"] = app.export_text()

    seen = headless(monkeypatch, second)
    assert launch.main(["--store", str(store), "--port", str(port)]) == 0
    if "error" in seen:
        raise seen["error"]
    assert "minilm is ready: version 1 → production" in seen["notes"]
    assert "4 models" in seen["screen"] and all(f" {n} " in seen["screen"] for n in DEMO)
    from modelbay.auth import KeyStore
    from modelbay.storage.local import LocalStore

    assert len(list(KeyStore(LocalStore(store)).list())) == 1  # the saved key was used, none minted again


def test_launcher_uses_the_bootstrap_key_and_mints_none(empty_home, tmp_path, monkeypatch, mlp_path):
    """With MODELBAY_BOOTSTRAP_KEY set, `modelbay serve` mints no key and the launcher calls with the bootstrap key."""
    monkeypatch.setenv("MODELBAY_BOOTSTRAP_KEY", "boot-" + "k" * 40)
    port = free_port()

    async def script(pilot, seen):
        app = pilot.app
        with Client(app.profile.url, app.client.api_key) as c:
            c.push(mlp_path, "booted")
        await until(pilot, lambda: names(app) == ["booted"], 30, "the pushed model")

    seen = headless(monkeypatch, script)
    assert launch.main(["--store", str(tmp_path / "store"), "--port", str(port), "--no-demo"]) == 0
    if "error" in seen:
        raise seen["error"]
    log = (tmp_path / "store" / "server.log").read_text()
    assert "MODELBAY_BOOTSTRAP_KEY is set: no admin key minted" in log
    assert not (empty_home / ".config" / "modelbay" / "credentials.json").exists()


def test_launcher_mints_a_key_for_a_store_whose_key_is_saved_elsewhere(empty_home, tmp_path, monkeypatch, capfd):
    """A store with keys but none saved for this URL (another port, another user): the launcher, which owns the
    store, mints one for this URL instead of failing on its first call."""
    from modelbay.auth import SCOPES, KeyStore
    from modelbay.storage.local import LocalStore

    store = tmp_path / "store"
    KeyStore(LocalStore(store)).create("default", SCOPES, name="someone else's", root=True)

    async def script(pilot, seen):
        seen["whoami"] = pilot.app.client.whoami()

    seen = headless(monkeypatch, script)
    assert launch.main(["--store", str(store), "--port", str(free_port()), "--no-demo"]) == 0
    if "error" in seen:
        raise seen["error"]
    assert seen["whoami"].root is True
    assert "created the admin key" in capfd.readouterr().err


def test_run_refuses_a_port_already_serving(tmp_path):
    from modelbay.api.app import create_app
    from modelbay.settings import Settings
    from tests.servers import running_keyed as running

    api = create_app(Settings(store_url=str(tmp_path / "s"), cache_dir=tmp_path / "c"))
    with running(api) as url:
        port = url.rsplit(":", 1)[1]
        assert launch.main(["--store", str(tmp_path / "store"), "--port", port]) == 1


def test_tui_command_opens_a_saved_profile(tmp_path, monkeypatch):
    """`modelbay tui --profile NAME` connects where the profile says, with its key."""
    from typer.testing import CliRunner

    from modelbay.cli import app as cli
    from modelbay_tui.config import Profiles

    monkeypatch.setenv("MODELBAY_CONFIG", str(tmp_path / "profiles.json"))
    monkeypatch.delenv("MODELBAY_URL", raising=False)
    profiles = Profiles.load()
    profiles.add("prod", "https://models.example.com/", "sk-prod-abcdef")
    profiles.save()
    seen = {}

    def fake_run(self, *a, **kw):  # the UI itself is driven in test_tui.py; here: which server, which key
        seen.update(url=self.client.url, key=self.client.api_key, title=self.profile.name)

    monkeypatch.setattr(ModelbayApp, "run", fake_run)
    r = CliRunner().invoke(cli, ["tui", "--profile", "prod"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert seen == {"url": "https://models.example.com", "key": "sk-prod-abcdef", "title": "prod"}
    assert Profiles.load().get("prod").masked_key == "sk-p…"


# ------------------------------------------------------------------ a real terminal
def tmux(*args: str, check: bool = True) -> str:
    r = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode:
        raise AssertionError(f"tmux {args}: {r.stderr}")
    return r.stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make test installs it with apt)")
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_in_a_real_terminal(empty_home, tmp_path):
    """`make run` itself in an 80x24 tmux terminal from an empty HOME: the demo models on screen, q quits, the
    server goes with it."""
    built()
    port, console_port = free_port(), free_port()
    session = f"modelbay-run-{os.getpid()}-{port}"
    done = tmp_path / "exit-code"
    env = {
        **os.environ,
        "MODELBAY_EXAMPLES_CACHE": str(SHARED_EXAMPLES),
        "TERM": "xterm-256color",
    }
    env.pop("TMUX", None)
    # -o install: the venv is there (the suite runs in it); make must not reinstall it in a test
    command = (
        f"make -s -C {REPO} -o install run PY={sys.executable} STORE={tmp_path / 'store'} PORT={port} "
        f"CONSOLE_PORT={console_port}; echo $? > {done}"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command],
        check=True,
        env=env,
        timeout=30,
    )
    try:
        deadline = time.monotonic() + 300
        screen = ""
        while time.monotonic() < deadline:
            screen = tmux("capture-pane", "-p", "-t", session, check=False)
            if "4 models" in screen and all(f" {n} " in screen for n in DEMO):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the demo models did not show in the terminal:\n{screen}")
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        assert "production→1" in screen and "● connected" in screen
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done.read_text().strip() == "0"
    finally:
        tmux("kill-session", "-t", session, check=False)
    with Client(f"http://127.0.0.1:{port}", timeout=2) as c, pytest.raises(ApiError) as e:
        c.models()
    assert e.value.code == "unreachable"
    # the browser console ran beside the TUI (its token URL in its log) and went with it
    console_log = (tmp_path / "store" / "console.log").read_text()
    assert f"open http://127.0.0.1:{console_port}/?token=" in console_log, console_log
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{console_port}/", timeout=2)
