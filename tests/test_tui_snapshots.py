"""Snapshot tests (pytest-textual-snapshot) of the main screens at 80x24, on frozen data.

The server is real; what would change between runs is frozen: the registry's clock,
the metrics clock, the server URL in the title bar and the health poller.
"""

from __future__ import annotations

import time

import pytest

from modelbay.client import Client
from modelbay.metrics import InferenceEvent
from tests.servers import running_keyed as running

pytest.importorskip("pytest_textual_snapshot")

from textual.widgets import DataTable

from modelbay_tui.app import ModelbayApp

NOW = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC


class FrozenTime:
    @staticmethod
    def time() -> float:
        return NOW


@pytest.fixture
def frozen(tmp_path, mlp_path, monkeypatch):
    from modelbay.api.app import create_app
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore

    stamps = iter(f"2026-09-21T1{h}:0{m}:00.000Z" for h in range(10) for m in range(10))
    monkeypatch.setattr("modelbay.registry.now_iso", lambda: next(stamps))
    monkeypatch.setattr("modelbay.metrics.series.time", FrozenTime)
    monkeypatch.setattr(
        ModelbayApp,
        "_title",
        lambda self: (
            setattr(self, "title", f"modelbay · {self.profile.name}"),
            setattr(self, "sub_title", "http://127.0.0.1:8080  ● connected"),
        ),
    )
    store = LocalStore(tmp_path / "store")
    api = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache"), store=store)
    with running(api) as url, Client(url) as c:
        c.push(mlp_path, "iris", aliases=["production"])
        c.push(mlp_path, "iris", aliases=["staging"])
        c.push(mlp_path, "digits")
        c.set_alias("iris", "production", 2)
        for minute in range(15):
            for i in range(10 + minute):
                v = 1 if minute < 8 else 2
                api.state.metrics.record(
                    InferenceEvent(
                        "iris",
                        v,
                        1,
                        total_ms=5.0 + (i * 7 + minute * 3) % 40 + (20 if v == 2 else 0),
                        inference_ms=3.0,
                        error="timeout" if (v == 2 and i % 6 == 0) else None,
                        timestamp=NOW - (14 - minute) * 60 - 30,
                    )
                )
        yield url


def _app(url, tmp_path) -> ModelbayApp:
    return ModelbayApp(url=url, profiles_path=tmp_path / "profiles.json", upload_root=tmp_path / "up", health_every=0)


async def _settle(pilot, cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond(pilot.app):
                break
        except Exception:
            pass
        await pilot.pause(0.05)
    await pilot.pause(0.3)


def _rows(app, selector: str) -> int:
    return app.screen.query_one(selector, DataTable).row_count


def test_models_screen(frozen, tmp_path, snap_compare):
    async def before(pilot):
        await _settle(pilot, lambda app: _rows(app, "#models") == 2)

    assert snap_compare(_app(frozen, tmp_path), run_before=before)


def test_model_screen(frozen, tmp_path, snap_compare):
    async def before(pilot):
        await _settle(pilot, lambda app: _rows(app, "#models") == 2)
        pilot.app.open_model("iris")
        await _settle(pilot, lambda app: _rows(app, "#versions") == 2)

    assert snap_compare(_app(frozen, tmp_path), run_before=before)


def test_rollback_confirmation(frozen, tmp_path, snap_compare):
    async def before(pilot):
        await _settle(pilot, lambda app: _rows(app, "#models") == 2)
        pilot.app.open_model("iris")
        await _settle(pilot, lambda app: _rows(app, "#versions") == 2)
        await pilot.press("b", "enter")
        await _settle(pilot, lambda app: type(app.screen).__name__ == "ConfirmModal")

    assert snap_compare(_app(frozen, tmp_path), run_before=before)


def test_metrics_screen(frozen, tmp_path, snap_compare):
    async def before(pilot):
        await _settle(pilot, lambda app: _rows(app, "#models") == 2)
        pilot.app.open_metrics("iris")
        await _settle(pilot, lambda app: _rows(app, "#metrics-table") == 3)

    assert snap_compare(_app(frozen, tmp_path), run_before=before)


def test_metrics_by_version(frozen, tmp_path, snap_compare):
    async def before(pilot):
        await _settle(pilot, lambda app: _rows(app, "#models") == 2)
        pilot.app.open_metrics("iris")
        await _settle(pilot, lambda app: _rows(app, "#metrics-table") == 3)
        await pilot.press("v")
        await pilot.pause(0.3)

    assert snap_compare(_app(frozen, tmp_path), run_before=before)


def test_upload_screen(frozen, tmp_path, snap_compare, mlp_path):
    import shutil

    (tmp_path / "up").mkdir()
    shutil.copy(mlp_path, tmp_path / "up" / "classifier.onnx")

    async def before(pilot):
        await _settle(pilot, lambda app: _rows(app, "#models") == 2)
        await pilot.press("u")
        await _settle(pilot, lambda app: len(app.screen.query_one("#up-tree").root.children) == 1)

    assert snap_compare(_app(frozen, tmp_path), run_before=before)


def test_playground_screen(frozen, tmp_path, snap_compare):
    async def before(pilot):
        await _settle(pilot, lambda app: _rows(app, "#models") == 2)
        pilot.app.open_playground("iris")
        await _settle(pilot, lambda app: app.screen.manifest is not None)

    assert snap_compare(_app(frozen, tmp_path), run_before=before)


def test_help_screen(frozen, tmp_path, snap_compare):
    async def before(pilot):
        await _settle(pilot, lambda app: _rows(app, "#models") == 2)
        await pilot.press("question_mark")

    assert snap_compare(_app(frozen, tmp_path), run_before=before)


def test_models_screen_light_theme(frozen, tmp_path, snap_compare):
    async def before(pilot):
        await _settle(pilot, lambda app: _rows(app, "#models") == 2)
        await pilot.press("ctrl+t")

    assert snap_compare(_app(frozen, tmp_path), run_before=before)
