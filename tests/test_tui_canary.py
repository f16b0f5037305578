"""The model screen's canary: start and abort by keyboard behind confirmations, the live split with its
guard rails, and an automatic abort shown with its reason (Pilot, 80x24, a real local server)."""

from __future__ import annotations

import time

import pytest

from modelbay.metrics import InferenceEvent
from modelbay.schemas import GuardRails
from tests.pilot import until
from tests.test_tui import drive, local, make_app  # noqa: F401  (local is a fixture)

pytest.importorskip("textual")

from textual.widgets import DataTable, Static


def panel(app) -> str:
    return str(app.screen.query_one("#canary", Static).render())


async def open_iris(pilot) -> None:
    app = pilot.app
    models = app.screen.query_one("#models", DataTable)
    await until(pilot, lambda: models.row_count == 2)
    await pilot.press("enter")
    await until(pilot, lambda: type(app.screen).__name__ == "ModelScreen")
    if app.screen.model != "iris":
        await pilot.press("escape", "down", "enter")
        await until(pilot, lambda: getattr(app.screen, "model", None) == "iris")
    await until(pilot, lambda: app.screen.query_one("#versions", DataTable).row_count == 2)


def test_canary_start_abort_and_an_automatic_abort_in_the_model_screen(local, tmp_path):  # noqa: F811
    api, url, c = local

    async def script(pilot):
        app = pilot.app
        await open_iris(pilot)
        # start: v2 (the top row) at the proposed 10%, after a confirmation that names the split
        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "PromptModal")
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        body = str(app.screen.query_one("#confirm-body").render())
        assert "v1 90%" in body and "canary v2 10%" in body
        assert c.alias_history("iris", "production").canary is None  # nothing before the yes
        await pilot.press("y")
        await until(pilot, lambda: c.alias_history("iris", "production").canary is not None, what="canary started")
        await until(pilot, lambda: "canary v2 10%" in panel(app), what="the split in the panel")

        # abort by keyboard, confirmed
        await pilot.press("a")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        await pilot.press("y")
        await until(pilot, lambda: c.alias_history("iris", "production").canary is None, what="abort on the server")
        await until(pilot, lambda: "canary aborted" in panel(app), what="the abort in the panel")

        # a guarded canary: the panel shows its rails and live comparison; a breach aborts it by itself
        c.start_canary("iris", "production", 2, 20, guard=GuardRails(max_error_rate=0.1, min_requests=5))
        await pilot.press("r")
        await until(pilot, lambda: "err≤10%" in panel(app) or "waiting" in panel(app), what="the rails")
        now = time.time()
        for i in range(8):
            api.state.metrics.record(
                InferenceEvent("iris", 2, instances=1, error="internal" if i < 4 else None, total_ms=3, timestamp=now)
            )
        await pilot.press("r")
        await until(pilot, lambda: "BREACHED" in panel(app), what="the breach in the panel")
        assert c.check_canary("iris", "production").state == "breached"
        await pilot.press("r")
        await until(pilot, lambda: "guard rail breached" in panel(app), what="the automatic abort and its reason")
        assert "back on v1" in panel(app)

    drive(make_app(url, tmp_path), script)
