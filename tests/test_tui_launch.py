"""``make run``'s launcher: a real server child process, the TUI on it, and the server gone after quitting."""

from __future__ import annotations

import pytest

from modelbay.client import ApiError, Client
from tests.servers import free_port

pytest.importorskip("textual")

from modelbay_tui import launch
from modelbay_tui.app import ModelbayApp


def test_run_starts_the_server_and_quitting_the_tui_stops_it(tmp_path, monkeypatch, mlp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    seen = {}
    original_run = ModelbayApp.run

    async def auto_pilot(pilot):
        app = pilot.app
        # the TUI talks to the child server: push a model through it and watch it appear
        with Client(url) as c:
            c.push(mlp_path, "launched")
        for _ in range(200):
            table = app.screen.query_one("#models") if app.screen.id != "_default" else None
            if table is not None and table.row_count == 1:
                break
            await pilot.pause(0.05)
        seen["rows"] = table.row_count
        seen["title"] = app.sub_title
        seen["name"] = app.title
        await pilot.press("q")

    def headless_run(self, *a, **kw):
        return original_run(self, headless=True, size=(80, 24), auto_pilot=auto_pilot)

    monkeypatch.setattr(ModelbayApp, "run", headless_run)
    monkeypatch.setattr(launch, "seed_demo", lambda client: "seeding is another test's business")
    assert launch.main(["--store", str(tmp_path / "store"), "--port", str(port)]) == 0
    assert seen == {"rows": 1, "title": f"{url}  ● connected", "name": "modelbay · local"}
    with Client(url, timeout=2) as c, pytest.raises(ApiError) as e:
        c.models()
    assert e.value.code == "unreachable"  # quitting the TUI stopped the server
    assert (tmp_path / "store" / "server.log").exists()


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
