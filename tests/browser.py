"""Headless Chromium (Debian's ``chromium`` + ``chromedriver``, ``make browser-tools``) driven by Selenium, and
the terminal a page shows, read back as text.

The console draws the TUI on a canvas (xterm.js), so the page holds no text to query. What the browser
received over the session's websocket is what it drew: a script installed before any page script records
those frames (and the sizes the page asked for), and pyte, a VT100 emulator, replays them into a screen.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "build" / "test-artifacts"

RECORD_FRAMES = """
window.__mb = {frames: [], sent: []};
const RealWebSocket = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const ws = new RealWebSocket(url, protocols);
  window.__mb.url = url;
  ws.addEventListener('message', (e) => {
    if (typeof e.data === 'string') return;
    let s = '';
    for (const b of new Uint8Array(e.data)) s += String.fromCharCode(b);
    window.__mb.frames.push(btoa(s));
  });
  const send = ws.send.bind(ws);
  ws.send = (m) => { window.__mb.sent.push(m); send(m); };
  return ws;
};
"""


def _binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("headless Chromium is not installed (make browser-tools: apt-get install chromium chromium-driver)")
    return chromium, driver


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A headless Chromium whose pages record their websocket frames."""
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _binaries()
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_FRAMES})
        yield driver
    finally:
        driver.quit()


class Terminal:
    """The TUI as the page drew it: websocket frames replayed into a pyte screen of the page's size."""

    def __init__(self, driver: Any) -> None:
        import pyte

        self.driver = driver
        self.screen = pyte.Screen(80, 24)
        self.stream = pyte.ByteStream(self.screen)
        self.frames = 0
        self.sent = 0

    def size(self) -> tuple[int, int]:
        return self.screen.columns, self.screen.lines

    def update(self) -> None:
        mb = self.driver.execute_script("return window.__mb")
        if not mb:
            return
        # a resize the page sent comes before the frames drawn at that size
        for message in mb["sent"][self.sent :]:
            kind, *body = json.loads(message)
            if kind == "resize":
                self.screen.resize(body[0]["height"], body[0]["width"])
        self.sent = len(mb["sent"])
        for frame in mb["frames"][self.frames :]:
            self.stream.feed(base64.b64decode(frame))
        self.frames = len(mb["frames"])

    def text(self) -> str:
        self.update()
        return "\n".join(line.rstrip() for line in self.screen.display)

    def wait(self, cond: Callable[[str], bool], what: str, timeout: float = 120.0) -> str:
        """Until ``cond(screen text)``; the screen in the failure."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if cond(text):
                return text
            time.sleep(0.1)
        sent = self.driver.execute_script("return (window.__mb || {sent: []}).sent.slice(-8)")
        raise AssertionError(f"timed out waiting for {what}; the page last sent {sent}; the browser shows:\n{text}")

    def shows(self, *needles: str, timeout: float = 120.0) -> str:
        return self.wait(lambda t: all(n in t for n in needles), " and ".join(map(repr, needles)), timeout)

    def press(self, *keys: str) -> None:
        """Keys typed into the page's terminal (Selenium's Keys constants or text)."""
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(*keys).perform()

    def chord(self, modifier: str, key: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).key_down(modifier).send_keys(key).key_up(modifier).perform()


def screenshot(driver: Any, name: str) -> Path:
    """Kept as a test artefact in build/test-artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
