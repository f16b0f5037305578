"""The modelbay terminal UI: models, versions, upload, live metrics and a playground, keyboard-first."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from modelbay.client import ApiError, Client
from modelbay.errors import ModelbayError

from .config import Profile, Profiles
from .modals import HelpScreen
from .screens.connect import ConnectScreen
from .screens.metrics import MetricsScreen
from .screens.model import ModelScreen
from .screens.models import ModelsScreen
from .screens.playground import PlaygroundScreen
from .screens.upload import UploadScreen

if TYPE_CHECKING:
    from modelbay.demo import SeedStatus

    from .seeding import DemoSeeding

HEALTH_EVERY = 3.0


class ModelbayApp(App[None]):
    CSS_PATH = "modelbay.tcss"
    TITLE = "modelbay"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("u", "upload", "Upload"),
        Binding("c", "connect", "Connect"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
    ]
    online: reactive[bool] = reactive(True)

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        profile: str | None = None,
        theme_name: str | None = None,
        profiles_path: Path | None = None,
        upload_root: Path | None = None,
        health_every: float = HEALTH_EVERY,
        seeding: DemoSeeding | None = None,
        confine_uploads: bool = False,
        console_url: str | None = None,
    ) -> None:
        super().__init__()
        self.profiles_path = profiles_path
        try:
            self.profiles = Profiles.load(profiles_path)
        except ModelbayError as e:  # a broken config file must not stop the UI
            self.profiles = Profiles({}, None)
            self._startup_error: str | None = e.message
        else:
            self._startup_error = None
        if url:
            self.profile = Profile(profile or "cli", url.rstrip("/"), api_key)
        else:
            chosen = self.profiles.get(profile) or self.profiles.get(self.profiles.current)
            self.profile = chosen or Profile("local", "http://127.0.0.1:8080", api_key)
        self.client = Client(self.profile.url, self.profile.api_key, timeout=15.0)
        self._theme_name = theme_name
        self.upload_root = upload_root
        # a browser session of ``modelbay console``: files outside its own folder are not the person's to push
        self.confine_uploads = confine_uploads
        self.console_url = console_url
        self.health_every = health_every
        self._checking = False
        self.ui_errors: list[Exception] = []
        self.notification_log: list[tuple[str, str, str]] = []
        # the demo models landing while the UI is open (``make run``): the latest status and when it came
        self.seeding = seeding
        self.seed_status: SeedStatus | None = None
        self._seed_status_at = 0.0

    # ------------------------------------------------------------ lifecycle
    def on_mount(self) -> None:
        if self._theme_name:
            try:
                self.theme = self._theme_name
            except Exception:
                self.notify(f"unknown theme {self._theme_name!r}", severity="warning")
        self._title()
        if self._startup_error:
            self.notify(self._startup_error, severity="error", timeout=10)
        self.push_screen(ModelsScreen())
        if self.console_url:
            self.notify(f"in a browser: {self.console_url}", title="console", timeout=30)
        if self.health_every:
            self.set_interval(self.health_every, self.check_health)
        if self.seeding is not None:
            self.seeding.start(self._from_seeding)

    def _from_seeding(self, status: SeedStatus) -> None:
        # the seeding reader thread; after the UI is gone there is nobody to tell
        if self.is_running:
            with contextlib.suppress(RuntimeError):
                self.call_from_thread(self.on_seed_status, status)

    def on_seed_status(self, status: SeedStatus) -> None:
        """A demo model is building, has landed, or was skipped: say so, and list what landed at once."""
        self.seed_status = status
        self._seed_status_at = time.monotonic()
        if status.state == "ready":
            self.notify(f"{status.model} is ready: {status.detail}", title="demo models")
        elif status.state == "skipped":
            self.notify(status.line(), title="demo models", severity="warning", timeout=10)
        elif status.state == "done":
            self.notify(status.line(), title="demo models")
        if status.state in ("ready", "done"):
            for screen in self.screen_stack:
                if isinstance(screen, ModelsScreen):
                    screen.refresh_data(quiet=True)
        for screen in self.screen_stack:
            if isinstance(screen, ModelsScreen):
                screen.show_activity()

    def seeding_line(self) -> str | None:
        """What the demo seeding is doing, with its estimate counting down; None once it is over."""
        st = self.seed_status
        if st is None or st.state not in ("building", "pushing"):
            return None
        left = None if st.remaining_s is None else st.remaining_s - (time.monotonic() - self._seed_status_at)
        return st.line(None if left is None else max(left, 0.0))

    def on_unmount(self) -> None:
        self.client.close()

    def _title(self) -> None:
        self.title = f"modelbay · {self.profile.name}"
        state = "● connected" if self.online else "✕ server unreachable — retrying"
        self.sub_title = f"{self.profile.url}  {state}"

    def watch_online(self, old: bool, new: bool) -> None:
        self._title()
        if old and not new:
            self.notify(
                f"lost {self.profile.url}; retrying every {self.health_every:.0f}s",
                severity="error",
                title="disconnected",
            )
        elif new and not old:
            self.notify(f"reconnected to {self.profile.url}", title="connected")
            screen = self.screen
            if hasattr(screen, "refresh_data"):
                screen.refresh_data(quiet=True)

    def check_health(self) -> None:
        if self._checking:
            return
        self._checking = True
        client = self.client

        def ping() -> bool:
            try:
                client.request("GET", "/v2/health/live")
            except ApiError as e:
                return e.code != "unreachable"  # any answer means the server is there
            return True

        def done(up: bool) -> None:
            self._checking = False
            self.online = up

        def job() -> None:
            try:
                up = ping()
            except Exception:  # anything odd on the wire counts as down; the next tick retries
                up = False
            self.call_from_thread(done, up)

        self.run_worker(job, thread=True, group="health", exclusive=True, exit_on_error=False)

    def notify(self, message: str, *, title: str = "", severity="information", timeout=None, markup: bool = True):
        # toasts vanish after seconds; the log keeps the last ones (tests read it, a user could page it).
        # Messages are plain text, always: they carry names, paths and the server's words ('x[batch,4]').
        self.notification_log.append((severity, title, str(message)))
        del self.notification_log[:-200]
        return super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def _handle_exception(self, error: Exception) -> None:
        # Textual exits on any exception in a handler. One broken widget must not take the
        # user's terminal down: show it, keep it for tests and bug reports, carry on.
        if not self.is_running or not isinstance(error, Exception):
            return super()._handle_exception(error)
        self.ui_errors.append(error)
        self.log.error(f"UI error: {error!r}")
        try:
            self.notify(f"{type(error).__name__}: {error}", severity="error", title="UI error", timeout=8, markup=False)
        except Exception:
            super()._handle_exception(error)

    # called by ApiMixin on the UI thread
    def api_failed(self, e: ApiError, quiet: bool = False) -> None:
        if e.code == "unreachable":
            self.online = False
            return  # the title and one notification say it; no storm of toasts
        if not quiet:  # the server's words, not markup: '[batch,4]' must survive
            self.notify(e.message, severity="error", title=f"{e.status} {e.code}", markup=False)

    def api_succeeded(self) -> None:
        if not self.online:
            self.online = True

    def export_text(self) -> str:
        """The current screen as plain text (what a user sees, without colours): tests and docs use it."""
        import io

        from rich.console import Console

        width, height = self.size
        console = Console(
            width=width,
            height=height,
            file=io.StringIO(),
            force_terminal=True,
            record=True,
            legacy_windows=False,
            safe_box=False,
            color_system="truecolor",
        )
        console.print(self.screen._compositor.render_update(full=True, screen_stack=self._background_screens))
        return console.export_text()

    # ------------------------------------------------------------ navigation
    def open_model(self, name: str) -> None:
        self.push_screen(ModelScreen(name))

    def open_metrics(self, name: str) -> None:
        self.push_screen(MetricsScreen(name))

    def open_playground(self, name: str, ref: str | None = None) -> None:
        self.push_screen(PlaygroundScreen(name, ref))

    def action_upload(self) -> None:
        if not isinstance(self.screen, UploadScreen):
            self.push_screen(UploadScreen(self.upload_root))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_connect(self) -> None:
        if not isinstance(self.screen, ConnectScreen):
            self.push_screen(ConnectScreen(), lambda name: self.switch_profile(name) if name else None)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    # ------------------------------------------------------------ profiles
    def save_profiles(self) -> None:
        self.profiles.save(self.profiles_path)

    def switch_profile(self, name: str) -> None:
        p = self.profiles.get(name)
        if p is None:
            self.notify(f"no profile {name!r}", severity="error")
            return
        old = self.client
        self.profile = p
        self.client = Client(p.url, p.api_key, timeout=15.0)
        old.close()
        self.profiles.current = name
        try:
            self.save_profiles()
        except OSError as e:
            self.notify(f"could not save profiles: {e}", severity="warning")
        self.online = True
        self._title()
        self.notify(f"connected to {p.name}: {p.url}")
        # back to the models list of the new server
        while len(self.screen_stack) > 2:
            self.pop_screen()
        if hasattr(self.screen, "refresh_data"):
            self.screen.refresh_data()
        self.check_health()

    # ------------------------------------------------------------ command palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Upload a model", "Pick a file, name it, quantize, push", self.action_upload)
        yield SystemCommand("Connections", "Switch or add a server profile", self.action_connect)
        yield SystemCommand(
            "Toggle light/dark", "Switch between textual-light and textual-dark", self.action_toggle_theme
        )
        for p in self.profiles.profiles.values():
            if p.name != self.profile.name:
                yield SystemCommand(f"Connect to {p.name}", p.url, lambda n=p.name: self.switch_profile(n))
        models = getattr(self.screen_stack[1] if len(self.screen_stack) > 1 else None, "rows", [])
        for m in models or []:
            n = m.name
            yield SystemCommand(f"Open {n}", "versions and aliases", lambda n=n: self.open_model(n))
            yield SystemCommand(f"Metrics of {n}", "live charts", lambda n=n: self.open_metrics(n))
            yield SystemCommand(f"Try {n}", "playground", lambda n=n: self.open_playground(n))
