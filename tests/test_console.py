"""``modelbay console``: the TUI served to browsers, started as a user starts it (``python -m modelbay console``)
against a real keyed server, and driven over HTTP, websockets and headless Chromium.

The operator's key is in the console's environment on purpose: no session may ever run under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from modelbay.auth import credentials
from modelbay.client import Client
from modelbay.settings import Settings
from tests.servers import free_port, running_keyed

pytest.importorskip("textual_serve")

from modelbay_tui.console import COOKIE, Login, SessionProcess
from modelbay_tui.launch import child_env, stop


@dataclass
class Stack:
    url: str  # the modelbay server
    operator_key: str  # its root key (the console's environment has it)
    person_key: str  # the key a teammate logs in with
    person_id: str
    client: Client  # as the operator


@pytest.fixture
def stack(tmp_path, mlp_path) -> Iterator[Stack]:
    """A real server with keys required: iris v1 (production) and v2, digits v1; a second key for a teammate."""
    from modelbay.api.app import create_app
    from modelbay.storage.local import LocalStore

    store = LocalStore(tmp_path / "store")
    api = create_app(Settings(store_url=store.url, cache_dir=tmp_path / "cache"), store=store)
    with running_keyed(api) as url:
        operator_key = credentials.load_key(url, Settings.from_env().credentials_file)
        assert operator_key
        with Client(url, operator_key) as c:
            c.push(mlp_path, "iris", aliases=["production"])
            c.push(mlp_path, "iris")
            c.push(mlp_path, "digits", aliases=["staging"])
            person = c.create_key(["invoke", "manage"], name="teammate")
            yield Stack(url, operator_key, person.key, person.key_id, c)


@dataclass
class Console:
    base: str  # http://127.0.0.1:PORT
    token: str
    open_url: str  # what it printed
    proc: subprocess.Popen[str]
    tmp: Path  # its TMPDIR

    def session_pids(self) -> list[int]:
        """The console's children: one TUI process per browser session (the shell textual-serve starts execs it)."""
        out = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            out += [int(p) for p in (task / "children").read_text().split()]
        return out


@contextlib.contextmanager
def console(url: str, operator_key: str, *args: str, **settings: str) -> Iterator[Console]:
    """``python -m modelbay --url URL console`` on a free port; settings as MODELBAY_CONSOLE_* variables."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="console-test-"))
    env = {**child_env(), "MODELBAY_API_KEY": operator_key, "MODELBAY_BOOTSTRAP_KEY": operator_key}
    env["TMPDIR"] = str(tmp)
    env.update({f"MODELBAY_CONSOLE_{k.upper()}": v for k, v in settings.items()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelbay", "--url", url, "console", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            output.append(line)
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=120)
            except queue.Empty:
                raise AssertionError(f"the console printed no URL: {''.join(output)}") from None
            if m := re.search(r"open (http://\S+/\?token=(\S+))", line):
                break
        yield Console(f"http://127.0.0.1:{port}", m.group(2), m.group(1), proc, tmp)
    finally:
        stop(proc)
        assert not list(tmp.glob("modelbay-console-*")), "the console left its folder behind"
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def login(c: Console, key: str) -> Iterator[httpx.Client]:
    """An HTTP client logged in to the console (its cookie set)."""
    with httpx.Client(base_url=c.base, timeout=30) as h:
        r = h.post("/login", data={"token": c.token, "api_key": key})
        assert r.status_code == 303, r.text
        yield h


def test_without_the_token_a_browser_gets_the_login_page_never_the_app(stack):
    with console(stack.url, stack.operator_key) as c, httpx.Client(base_url=c.base, timeout=30) as h:
        assert c.open_url.startswith(c.base + "/?token=") and len(c.token) >= 24
        page = h.get("/")
        assert page.status_code == 401 and 'name="api_key"' in page.text
        assert "textual.js" not in page.text and "/ws" not in page.text
        # a wrong token is refused and not echoed back
        wrong = h.get("/", params={"token": "not-the-token-at-all"})
        assert wrong.status_code == 403 and "not-the-token-at-all" not in wrong.text
        # the right one pre-fills the form; it still asks for the person's own key
        right = h.get("/", params={"token": c.token})
        assert right.status_code == 401 and c.token in right.text and 'name="api_key"' in right.text
        # no session without logging in: the websocket and downloads are refused
        assert h.get("/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket"}).status_code == 401
        assert h.get("/download/anything").status_code == 401
        assert h.post("/login", data={"token": "nope", "api_key": stack.person_key}).status_code == 403
        elsewhere = {"Origin": "http://evil.example"}
        assert h.post("/login", data={"token": c.token, "api_key": ""}, headers=elsewhere).status_code == 403
        # the token alone is not enough: the server must take the key the person enters
        no_key = h.post("/login", data={"token": c.token, "api_key": ""})
        assert no_key.status_code == 403 and "needs an API key" in no_key.text
        bad_key = h.post("/login", data={"token": c.token, "api_key": "mb_nothing_real"})
        assert bad_key.status_code == 403 and "does not accept" in bad_key.text
        assert h.cookies.get(COOKIE) is None

        ok = h.post("/login", data={"token": c.token, "api_key": stack.person_key})
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        app = h.get("/")
        assert app.status_code == 200 and "textual.js" in app.text and "data-session-websocket-url" in app.text
        assert stack.person_key not in app.text and stack.operator_key not in app.text

        assert h.post("/logout").status_code == 303
        h.cookies.set(COOKIE, ok.cookies[COOKIE])  # the old cookie is dead after logging out
        assert h.get("/").status_code == 401


def test_no_token_is_refused_on_a_non_loopback_host():
    r = subprocess.run(
        [sys.executable, "-m", "modelbay", "console", "--host", "0.0.0.0", "--no-token", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert r.returncode == 2 and "loopback" in r.stderr


def test_a_session_runs_under_the_persons_key_in_its_own_folder(tmp_path, monkeypatch):
    """The environment a session's process gets: the person's key, the server, a private HOME; nothing else."""
    monkeypatch.setenv("MODELBAY_API_KEY", "mb_operator_secret")
    monkeypatch.setenv("MODELBAY_BOOTSTRAP_KEY", "mb_operator_root")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/operator/.config")

    async def build() -> dict[str, str]:
        proc = SessionProcess(
            Login("id", "mb_person", tmp_path),
            "http://127.0.0.1:1",
            None,
            write_bytes=None,  # type: ignore[arg-type]
            write_str=None,  # type: ignore[arg-type]
            close=None,  # type: ignore[arg-type]
            download_manager=None,  # type: ignore[arg-type]
        )
        return proc._build_environment(100, 30)

    env = asyncio.run(build())
    assert env["MODELBAY_API_KEY"] == "mb_person" and env["MODELBAY_URL"] == "http://127.0.0.1:1"
    assert "operator" not in repr(env) and "aws-secret" not in repr(env) and "MODELBAY_BOOTSTRAP_KEY" not in env
    for var in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        assert Path(env[var]).is_relative_to(tmp_path)
    assert env["TEXTUAL_DRIVER"].endswith("WebDriver") and (env["COLUMNS"], env["ROWS"]) == ("100", "30")


async def _ws(base: str, cookie: str, **headers: str):
    import aiohttp

    session = aiohttp.ClientSession(cookies={COOKIE: cookie})
    try:
        return session, await session.ws_connect(f"{base.replace('http', 'ws')}/ws?width=80&height=24", headers=headers)
    except BaseException:
        await session.close()
        raise


async def _first_bytes(ws) -> bytes:
    import aiohttp

    while True:
        msg = await asyncio.wait_for(ws.receive(), 120)
        if msg.type == aiohttp.WSMsgType.BINARY:
            return msg.data
        assert msg.type == aiohttp.WSMsgType.TEXT, msg


def test_sessions_are_capped_and_cross_site_pages_refused(stack):
    import aiohttp

    with console(stack.url, stack.operator_key, max_sessions="1") as c, login(c, stack.person_key) as h:
        cookie = h.cookies[COOKIE]

        async def scenario() -> None:
            s1, ws1 = await _ws(c.base, cookie)
            try:
                assert await _first_bytes(ws1)  # the app started and draws
                [pid] = c.session_pids()
                assert "modelbay_tui.session" in Path(f"/proc/{pid}/cmdline").read_text()
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                assert f"MODELBAY_API_KEY={stack.person_key}".encode() in environ  # the teammate's key
                assert not [v for v in environ if stack.operator_key.encode() in v]  # never the operator's
                # a second tab while the one slot is taken: refused before any process starts
                with pytest.raises(aiohttp.WSServerHandshakeError) as full:
                    await _ws(c.base, cookie)
                assert full.value.status == 503
                page = await asyncio.to_thread(h.get, "/")
                assert page.status_code == 503 and "full" in page.text
                assert len(c.session_pids()) == 1
            finally:
                await ws1.close()
                await s1.close()
            # the slot is free again once the tab is gone; a page of another site may not use it
            with pytest.raises(aiohttp.WSServerHandshakeError) as cross:
                await _ws(c.base, cookie, Origin="http://evil.example")
            assert cross.value.status == 403
            s2, ws2 = await _ws(c.base, cookie)
            try:
                assert await _first_bytes(ws2)
            finally:
                await ws2.close()
                await s2.close()

        asyncio.run(scenario())


def test_an_idle_session_is_stopped_and_its_process_ends(stack):
    import aiohttp

    with console(stack.url, stack.operator_key, idle_seconds="2") as c, login(c, stack.person_key) as h:

        async def scenario() -> None:
            s, ws = await _ws(c.base, h.cookies[COOKIE])
            try:
                # no key press, no click: the console closes the session (whenever the sweep sees it idle,
                # which may be before the app has drawn anything on a loaded machine)
                while (msg := await asyncio.wait_for(ws.receive(), 120)).type not in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    pass
                assert msg.type == aiohttp.WSMsgType.CLOSED or msg.extra == "idle timeout"
            finally:
                await s.close()

        asyncio.run(scenario())
        deadline = 120
        while c.session_pids() and deadline > 0:  # the app was asked to quit; it goes
            deadline -= 0.1
            asyncio.run(asyncio.sleep(0.1))
        assert c.session_pids() == []


def test_settings_bound_the_console():
    s = Settings.from_env({"MODELBAY_CONSOLE_MAX_SESSIONS": "3", "MODELBAY_CONSOLE_IDLE_SECONDS": "60"})
    assert (s.console_max_sessions, s.console_idle_seconds) == (3, 60.0)
    d = Settings()
    assert d.console_max_sessions >= 1 and d.console_idle_seconds > 0 and d.console_token is None
    for bad in ({"MODELBAY_CONSOLE_MAX_SESSIONS": "0"}, {"MODELBAY_CONSOLE_TOKEN": "short"}):
        with pytest.raises(Exception, match=next(iter(bad))):
            Settings.from_env(bad)


def test_make_run_launcher_starts_the_console_beside_the_tui(stack, tmp_path):
    """What ``make run`` prints and opens: the console on its port, on the launcher's server, behind its token."""
    from modelbay_tui.launch import start_console

    port = free_port()
    proc, url = start_console(stack.url, "127.0.0.1", port, tmp_path, child_env())
    try:
        assert url.startswith(f"http://127.0.0.1:{port}/?token=")
        token = url.split("token=", 1)[1]
        with httpx.Client(timeout=30) as h:
            for _ in range(1200):
                with contextlib.suppress(httpx.TransportError):
                    if h.get(f"http://127.0.0.1:{port}/").status_code == 401:
                        break
                assert proc.poll() is None, (tmp_path / "console.log").read_text()
                asyncio.run(asyncio.sleep(0.1))
            r = h.post(f"http://127.0.0.1:{port}/login", data={"token": token, "api_key": stack.person_key})
            assert r.status_code == 303
        assert token not in " ".join(proc.args)  # type: ignore[arg-type]
    finally:
        stop(proc)


def _rss_kib(pid: int) -> int:
    """Resident memory of a process and its descendants (KiB)."""
    total = 0
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        status = Path(f"/proc/{pid}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) if "VmRSS" in status else 0  # type: ignore[union-attr]
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += sum(_rss_kib(int(c)) for c in (task / "children").read_text().split())
    return total


def _fit(d, term, cols: int, rows: int) -> tuple[int, int]:
    """Resize the window until the page's terminal is about cols x rows cells."""
    for _ in range(6):
        have_c, have_r = term.size()
        if cols <= have_c <= cols + 2 and rows <= have_r <= rows + 1:
            break
        w = d.execute_script("return [document.getElementById('terminal').clientWidth, window.innerHeight]")
        win = d.get_window_size()
        cell_w, cell_h = w[0] / have_c, (w[1] - 28) / have_r
        d.set_window_size(
            int(win["width"] + (cols + 1 - have_c) * cell_w), int(win["height"] + (rows + 0.5 - have_r) * cell_h)
        )
        before = (have_c, have_r)
        term.wait(lambda _, before=before: term.size() != before, "the terminal to take the new size", timeout=30)
    return term.size()


def test_in_headless_chromium_log_in_promote_visit_every_screen_and_upload(stack, tmp_path, mlp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tests.browser import ARTIFACTS, Terminal, chromium, screenshot

    with console(stack.url, stack.operator_key) as c, chromium(1280, 800) as d:
        d.get(c.base + "/")  # no token: the login page, and no terminal
        assert d.find_elements(By.ID, "login") and not d.find_elements(By.ID, "terminal")
        d.get(c.open_url)
        d.find_element(By.ID, "api_key").send_keys(stack.person_key)
        d.find_element(By.ID, "submit").click()
        term = Terminal(d)
        text = term.shows("iris", "digits", "production→1", "q Quit")
        cols, rows = term.size()
        assert cols > 100 and rows > 28, (cols, rows)  # a browser window, not 80x24
        assert "console — " + stack.url in text
        screenshot(d, "console-models")
        [pid] = c.session_pids()

        # open iris (the cursor starts on the first row) and promote its v2 to production
        lines = text.splitlines()
        first = min(i for i, line in enumerate(lines) if re.match(r"\s*(iris|digits)\s", line))
        d.find_element(By.ID, "terminal").click()
        if lines[first].split()[0] != "iris":
            term.press(Keys.DOWN)
        term.press(Keys.ENTER)
        term.shows("production", "fp32", "p Promote")
        term.press("p")
        term.shows("Promote iris v2")
        term.press(Keys.ENTER)
        term.shows("iris:production → v2")
        state = stack.client.alias_history("iris", "production")
        assert state.version == 2 and state.updated_by == stack.person_id  # the teammate's key, not the operator's

        # every screen: live charts, the playground (a prediction), help, the command palette
        # (a lone escape is only one when nothing follows it at once: wait for its effect before the next key)
        term.press("g")
        term.shows("requests/min", "latency ms")
        term.press(Keys.ESCAPE)
        term.shows("p Promote")
        term.press("t")
        term.shows("output appears here", "instances as JSON", "[[")  # the example is in: ready to send
        term.chord(Keys.CONTROL, "s")
        term.shows("round trip", '"predictions"')
        term.press(Keys.ESCAPE)
        term.shows("p Promote")
        term.press(Keys.ESCAPE)
        term.shows("/ Search")
        term.press("?")
        term.shows("modelbay — keys")
        term.press(Keys.ESCAPE)
        term.wait(lambda t: "modelbay — keys" not in t, "help to close")
        term.chord(Keys.CONTROL, "p")
        term.press("Upload a")
        term.shows("Pick a file, name it")
        term.press(Keys.ESCAPE)
        term.wait(lambda t: "Pick a file, name it" not in t, "the palette to close")

        # upload from the browser: the file lands in the session's folder, the Upload screen pushes it
        d.find_element(By.ID, "file").send_keys(str(mlp_path))
        status = d.find_element(By.ID, "upload-status")
        term.wait(lambda _: "is in your folder" in status.text, "the file in the session's folder")
        term.press("u")
        term.shows("mlp.onnx")
        term.press(Keys.DOWN, Keys.ENTER)
        term.shows("file: mlp.onnx")
        term.chord(Keys.CONTROL, "u")
        term.shows("registered mlp v1", timeout=120)
        assert [m.version for m in stack.client.versions("mlp")] == [1]
        screenshot(d, "console-upload")
        rss_mb = _rss_kib(pid) / 1024

        # the same app at 80x24 in a small window
        term.press(Keys.ESCAPE)
        term.shows("/ Search")
        assert _fit(d, term, 80, 24)[0] <= 82
        small = term.shows("iris", "digits", "mlp", "q Quit")
        assert "production→2" in small
        screenshot(d, "console-80x24")
        (ARTIFACTS / "console-memory.txt").write_text(f"one console session (TUI process): {rss_mb:.0f} MB RSS\n")


def test_in_headless_chromium_a_digit_is_drawn_with_the_mouse(stack, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tests.browser import Terminal, chromium, screenshot
    from tests.inference_models import digits_metadata, image_classifier

    img, _ = image_classifier(tmp_path / "digits8.onnx")
    stack.client.push(img, "pixels", digits_metadata(), aliases=["production"])
    with console(stack.url, stack.operator_key) as c, chromium(1280, 800) as d:
        d.get(c.open_url)
        d.find_element(By.ID, "api_key").send_keys(stack.person_key)
        d.find_element(By.ID, "submit").click()
        term = Terminal(d)
        term.shows("pixels", "production→1")
        terminal = d.find_element(By.ID, "terminal")
        terminal.click()
        term.chord(Keys.CONTROL, "p")  # the command palette opens the playground
        term.press("Try pixels")
        term.shows("Try pixels")
        term.press(Keys.ENTER)
        text = term.shows("bright ink on black", "[]· · · · · · · ")  # the hint can be drawn before the grid
        lines = text.splitlines()
        # the 8x8 grid, empty, its cursor ("[]") in the top-left cell
        top = next(i for i, line in enumerate(lines) if "[]· · · · · · · " in line)
        left = lines[top].index("[]")
        assert all("· · · · · · · · " in line[left:] for line in lines[top + 1 : top + 8]), text
        cols, rows = term.size()
        cell_w, cell_h = terminal.size["width"] / cols, terminal.size["height"] / rows

        def at(col: int, row: int) -> tuple[int, int]:  # offsets from the element's centre (Selenium 4)
            return (
                int((col + 0.5) * cell_w - terminal.size["width"] / 2),
                int((row + 0.5) * cell_h - terminal.size["height"] / 2),
            )

        # press on grid column 3, drag down six rows, let go: a vertical stroke
        x0, y0 = at(left + 2 * 3, top + 1)
        chain = ActionChains(d).move_to_element_with_offset(terminal, x0, y0).click_and_hold()
        for r in range(2, 7):
            chain.move_to_element_with_offset(terminal, *at(left + 2 * 3, top + r))
        chain.release().perform()
        drawn = term.wait(lambda t: t.count("██") >= 5, "ink drawn by the mouse")
        inked = [line[left:].split("██")[0].count("·") for line in drawn.splitlines()[top : top + 8] if "██" in line]
        assert len(inked) >= 5 and set(inked) == {3}, drawn  # one column, the one pressed
        term.chord(Keys.CONTROL, "s")
        term.shows("round trip")
        screenshot(d, "console-digit")


def test_files_from_the_browser_stay_in_the_session_folder_and_are_bounded(stack):
    with console(stack.url, stack.operator_key, upload_mb="1") as c:
        with httpx.Client(base_url=c.base, timeout=30) as anon:
            r = anon.post("/files", files={"file": ("m.onnx", b"x")})
            assert r.status_code == 401 and r.json()["error"]
        with login(c, stack.person_key) as h:
            r = h.post("/files", files={"file": ("../../../etc/evil.onnx", b"onnx bytes")})
            assert r.status_code == 200 and r.json() == {"name": "evil.onnx", "size": 10}
            [root] = c.tmp.glob("modelbay-console-*")
            assert oct(root.stat().st_mode & 0o777) == "0o700"  # the sessions' folders are the console user's only
            [folder] = root.glob("session-*")
            assert (folder / "evil.onnx").read_bytes() == b"onnx bytes"
            big = h.post("/files", files={"file": ("big.onnx", b"\0" * (1024**2 + 1))})
            assert big.status_code == 413 and "1 MiB" in big.json()["error"]
            assert not (folder / "big.onnx").exists() and not list(folder.glob(".upload-*"))
            assert h.post("/files", content=b"not multipart").status_code == 400
            assert h.post("/files", files={"file": ("...", b"x")}).status_code == 400
            other = h.post("/files", headers={"Origin": "http://evil.example"}, files={"file": ("a.onnx", b"x")})
            assert other.status_code == 401
