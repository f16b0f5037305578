"""Waiting in Pilot tests: for a condition on the app, with the screen's text in the failure."""

from __future__ import annotations

import time


async def until(pilot, cond, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:
            pass
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{pilot.app.export_text()}")
