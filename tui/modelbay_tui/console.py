"""``modelbay console``: the terminal UI served to browsers, one app process per browser session.

textual-serve runs each session's TUI as a child process (``modelbay_tui.session``) and relays it over a
websocket. Around it, as Jupyter does: the console prints a token URL at start, and a browser without the
token gets a login page, never the app. At login the person enters their own API key; the session's
process runs under that key and nothing else (the operator's key is never handed out). Sessions are
bounded: at most ``console_max_sessions`` processes at once, each stopped after ``console_idle_seconds``
without input. Files uploaded from the browser land in the session's own folder, the only place its
Upload screen may push from (through the same upload URLs as the terminal).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import BodyPartReader, web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from modelbay.client import ApiError, Client
from modelbay.settings import Settings

log = logging.getLogger("modelbay.console")

COOKIE = "modelbay_console"
TEMPLATES = Path(__file__).with_name("console_templates")
# a browser may ask for any terminal size; beyond these the app would only burn memory
MAX_COLS, MAX_ROWS = 400, 200
# variables a session's process may inherit: none that could carry the operator's keys or profiles
INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "SYSTEMROOT", "TMPDIR")
STOP_GRACE = 10.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Login:
    """A browser that passed the login: its own key, folder and processes."""

    id: str
    api_key: str
    folder: Path
    last_seen: float = field(default_factory=time.monotonic)
    live: int = 0


class SessionProcess(AppService):
    """One browser tab's TUI process: a scrubbed environment, a bounded size, and the time of the last input."""

    def __init__(self, login: Login, url: str, theme: str | None, **kw: Any) -> None:
        # exec: the shell textual-serve starts becomes the app, so stopping it stops the app, not only a shell
        command = (
            f"exec {shlex.quote(sys.executable)} -m modelbay_tui.session --folder {shlex.quote(str(login.folder))}"
        )
        if theme:
            command += f" --theme {shlex.quote(theme)}"
        super().__init__(command, **kw)
        self.login = login
        self.url = url
        self.last_input = time.monotonic()

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        textual = super()._build_environment(width, height)
        env = {k: v for k, v in textual.items() if k in INHERITED or k.startswith(("TEXTUAL", "TERM"))}
        home = self.login.folder / ".home"
        env.update(
            COLUMNS=textual["COLUMNS"],
            ROWS=textual["ROWS"],
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / "config"),
            XDG_CACHE_HOME=str(home / "cache"),
            XDG_DATA_HOME=str(home / "data"),
            MODELBAY_URL=self.url,
            MODELBAY_API_KEY=self.login.api_key,
        )
        return env

    def touched(self) -> None:
        self.last_input = time.monotonic()
        self.login.last_seen = self.last_input

    async def send_bytes(self, data: bytes) -> bool:
        self.touched()
        return await super().send_bytes(data)

    async def set_terminal_size(self, width: int, height: int) -> None:
        self.touched()
        await super().set_terminal_size(max(1, min(int(width), MAX_COLS)), max(1, min(int(height), MAX_ROWS)))

    async def stop(self) -> None:
        """Ask the app to quit; kill it if it has not within STOP_GRACE seconds."""
        with contextlib.suppress(TimeoutError, ProcessLookupError, ConnectionError):
            await asyncio.wait_for(super().stop(), STOP_GRACE)
        proc = self._process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class ConsoleServer(Server):
    def __init__(
        self,
        url: str,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 8090,
        token: str | None = None,
        theme: str | None = None,
    ) -> None:
        super().__init__(
            command="modelbay_tui.session", host=host, port=port, title="modelbay", templates_path=TEMPLATES
        )
        self.url = url.rstrip("/")
        self.settings = settings
        self.token = token
        self.theme = theme
        self.logins: dict[str, Login] = {}
        self.live: set[SessionProcess] = set()
        self.sockets: dict[SessionProcess, web.WebSocketResponse] = {}
        self.root = Path(tempfile.mkdtemp(prefix="modelbay-console-"))
        os.chmod(self.root, 0o700)

    # ------------------------------------------------------------ limits
    @property
    def max_sessions(self) -> int:
        return self.settings.console_max_sessions

    @property
    def max_logins(self) -> int:
        # logins without a process are cheap but not free (a folder each): a few per possible session
        return 4 * self.max_sessions

    def login_url(self, host: str | None = None) -> str:
        base = f"http://{host or self.host}:{self.port}/"
        return f"{base}?token={self.token}" if self.token else base

    # ------------------------------------------------------------ app
    async def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)  # forms only: files are streamed, with their own limit
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path), autoescape=True)
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.post("/login", self.handle_login),
                web.post("/logout", self.handle_logout),
                web.post("/files", self.handle_files),
                web.get("/ws", self.handle_websocket, name="websocket"),
                web.get("/download/{key}", self.handle_guarded_download, name="download"),
                web.static("/static", self.statics_path, name="static"),
            ]
        )
        app.on_startup.append(self.on_startup)
        app.on_cleanup.append(self.on_cleanup)
        return app

    async def on_startup(self, app: web.Application) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def on_cleanup(self, app: web.Application) -> None:
        self._sweeper.cancel()
        for proc, ws in list(self.sockets.items()):
            await ws.close(message=b"the console is stopping")
            await proc.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _login_of(self, request: web.Request) -> Login | None:
        login = self.logins.get(request.cookies.get(COOKIE, ""))
        if login is not None:
            login.last_seen = time.monotonic()
        return login

    def _token_ok(self, given: str | None) -> bool:
        return self.token is None or (given is not None and hmac.compare_digest(given.encode(), self.token.encode()))

    def _page(self, request: web.Request, status: int, message: str = "", token: str = "") -> web.Response:
        context = {
            "message": message,
            "token": token,
            "need_token": self.token is not None,
            "server": self.url,
        }
        return aiohttp_jinja2.render_template("login.html", request, context, status=status)

    async def handle_index(self, request: web.Request) -> web.Response:
        login = self._login_of(request)
        if login is None:
            given = request.query.get("token")
            if given is not None and not self._token_ok(given):
                return self._page(request, 403, "that token is not this console's")
            # the token is only echoed back when it is the right one (it pre-fills the form)
            return self._page(request, 401, token=given or "")
        if len(self.live) >= self.max_sessions:
            return self._page(request, 503, f"the console is full ({self.max_sessions} sessions); try again later")
        scheme = "wss" if request.secure else "ws"
        context = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{scheme}://{request.host}/ws",
            "static_url": "/static/",
            "server": self.url,
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def handle_login(self, request: web.Request) -> web.Response:
        if not self._same_origin(request):  # another site must not log a browser in to a session of its choosing
            return self._page(request, 403, "log in from the console's own page")
        form = await request.post()
        token, key = form.get("token"), form.get("api_key")
        if not isinstance(key, str) or (token is not None and not isinstance(token, str)):
            return self._page(request, 400, "send the form's fields as text")
        if not self._token_ok(token if isinstance(token, str) else None):
            return self._page(request, 403, "that token is not this console's")
        key = key.strip()
        refused = await asyncio.to_thread(self._check_key, key)
        if refused:
            return self._page(request, 403, refused, token=token if isinstance(token, str) else "")
        self._sweep_logins()
        if len(self.logins) >= self.max_logins:
            return self._page(request, 503, f"too many logins ({self.max_logins}); try again later", token=token or "")
        login = Login(secrets.token_urlsafe(32), key, Path(tempfile.mkdtemp(prefix="session-", dir=self.root)))
        self.logins[login.id] = login
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, login.id, httponly=True, samesite="Strict", secure=request.secure, path="/")
        raise response

    def _check_key(self, key: str) -> str | None:
        """Why the server refuses this key (None: it takes it)."""
        try:
            with Client(self.url, key, timeout=10.0) as c:
                c.whoami()
        except ApiError as e:
            if e.code == "unreachable":
                return f"the modelbay server at {self.url} does not answer"
            if e.status in (401, 403):
                return "the server does not accept that key" if key else "the server needs an API key"
        return None

    async def handle_logout(self, request: web.Request) -> web.Response:
        login = self._login_of(request)
        if login is not None:
            for proc, ws in list(self.sockets.items()):
                if proc.login is login:
                    await ws.close(message=b"logged out")
            self._drop(login)
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def handle_files(self, request: web.Request) -> web.Response:
        """A file from the browser, into the session's folder (the TUI's Upload screen lists it)."""
        login = self._login_of(request)
        if login is None or not self._same_origin(request):
            return web.json_response({"error": "log in first"}, status=401)
        limit = self.settings.console_upload_mb * 1024**2
        try:
            reader = await request.multipart()
            part = await reader.next()
        except (ValueError, AssertionError, KeyError):
            part = None
        filename = getattr(part, "filename", None)
        name = Path(filename).name.lstrip(".") if filename else ""
        if not isinstance(part, BodyPartReader) or not name:
            return web.json_response({"error": "send one named file in a multipart form"}, status=400)
        if (login.folder / name).is_dir():
            return web.json_response({"error": f"{name} is a folder in your session"}, status=400)
        room = limit - folder_bytes(login.folder)
        fd, tmp = tempfile.mkstemp(dir=login.folder, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                while chunk := await part.read_chunk():
                    room -= len(chunk)
                    if room < 0:
                        break
                    f.write(chunk)
            if room < 0:
                return web.json_response(
                    {"error": f"a session's files may hold {self.settings.console_upload_mb} MiB"}, status=413
                )
            os.replace(tmp, login.folder / name)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return web.json_response({"name": name, "size": (login.folder / name).stat().st_size})

    async def handle_guarded_download(self, request: web.Request) -> web.StreamResponse:
        if self._login_of(request) is None:
            raise web.HTTPUnauthorized(text="log in first")
        return await self.handle_download(request)

    def _same_origin(self, request: web.Request) -> bool:
        """A page from another site must not drive a logged-in browser's session (the cookie is SameSite too)."""
        origin = request.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc == request.host

    # ------------------------------------------------------------ sessions
    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        login = self._login_of(request)
        if login is None:
            raise web.HTTPUnauthorized(text="log in first")
        if not self._same_origin(request):
            raise web.HTTPForbidden(text="cross-origin websocket refused")
        if len(self.live) >= self.max_sessions:
            raise web.HTTPServiceUnavailable(text=f"the console is full ({self.max_sessions} sessions)")
        websocket = web.WebSocketResponse(heartbeat=15)
        proc = SessionProcess(
            login,
            self.url,
            self.theme,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        # the slot is taken before the first await: two tabs cannot both pass the check above
        self.live.add(proc)
        self.sockets[proc] = websocket
        login.live += 1
        try:
            await websocket.prepare(request)
            width = max(1, min(to_int(request.query.get("width", "80"), 80), MAX_COLS))
            height = max(1, min(to_int(request.query.get("height", "24"), 24), MAX_ROWS))
            await proc.start(width, height)
            assert proc._task is not None
            # an app that dies (or never starts) ends the browser's session too
            proc._task.add_done_callback(lambda _: asyncio.ensure_future(websocket.close()))
            await self._process_messages(websocket, proc)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception as error:  # a malformed message ends this session only
            log.warning("console session ended: %r", error)
        finally:
            self.live.discard(proc)
            self.sockets.pop(proc, None)
            login.live -= 1
            await proc.stop()
            await websocket.close()
        return websocket

    async def _sweep_forever(self) -> None:
        every = min(5.0, self.settings.console_idle_seconds / 4)
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except Exception as e:  # the next round tries again; the limits must not stop being enforced
                log.warning("console sweep failed: %r", e)

    async def sweep(self) -> None:
        """Stop sessions idle for longer than the timeout; forget logins with no process that long."""
        now = time.monotonic()
        idle = self.settings.console_idle_seconds
        for proc, ws in list(self.sockets.items()):
            if now - proc.last_input > idle:
                log.info("console session idle for %.0fs: stopped", now - proc.last_input)
                await ws.close(message=b"idle timeout")
        self._sweep_logins()

    def _sweep_logins(self) -> None:
        now = time.monotonic()
        idle = self.settings.console_idle_seconds
        for login in list(self.logins.values()):
            if login.live <= 0 and now - login.last_seen > idle:
                self._drop(login)

    def _drop(self, login: Login) -> None:
        self.logins.pop(login.id, None)
        shutil.rmtree(login.folder, ignore_errors=True)

    # ------------------------------------------------------------ running
    async def run(self, ready: Callable[[ConsoleServer], Awaitable[None] | None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM (or cancellation)."""
        runner = web.AppRunner(await self._make_app(), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            if ready is not None:
                result = ready(self)
                if result is not None:
                    await result
            await stop.wait()
        finally:
            await runner.cleanup()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def new_token() -> str:
    return secrets.token_urlsafe(24)


def serve(
    url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8090,
    token: str | None = None,
    no_token: bool = False,
    theme: str | None = None,
    settings: Settings | None = None,
    announce: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> None:
    """Run the console in the foreground; ``announce`` gets the URL to open (with its token)."""
    if no_token and not is_loopback(host):
        raise ValueError(f"--no-token only on a loopback address: anyone who reaches {host} could log in")
    settings = settings or Settings.from_env()
    server = ConsoleServer(
        url,
        settings,
        host=host,
        port=port,
        token=None if no_token else (token or settings.console_token or new_token()),
        theme=theme,
    )

    def ready(s: ConsoleServer) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        announce(f"modelbay console for {url}: open {s.login_url(shown)}")
        announce(
            f"  each browser logs in with its own API key; at most {settings.console_max_sessions} sessions, "
            f"each stopped after {settings.console_idle_seconds:.0f}s idle"
        )

    try:
        asyncio.run(server.run(ready))
    finally:
        shutil.rmtree(server.root, ignore_errors=True)
