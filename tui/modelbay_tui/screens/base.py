from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from ..api import ApiMixin

if TYPE_CHECKING:
    from textual import getters

    from modelbay.client import Client

    from ..app import ModelbayApp


class BaseScreen(ApiMixin, Screen):
    """A screen that loads from the server; ``refresh_data`` runs again on a timer (``AUTO_REFRESH`` seconds,
    while the screen is the one shown), on coming back to the screen, and on reconnect."""

    if TYPE_CHECKING:
        app = getters.app(ModelbayApp)  # self.app typed as modelbay's (Textual's says App[object])

    AUTO_REFRESH: float | None = None

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._shown_before = False

    def on_mount(self) -> None:
        self.refresh_data()
        if self.AUTO_REFRESH:
            self.set_interval(self.AUTO_REFRESH, self.timed_refresh)

    def on_screen_resume(self) -> None:
        # the first resume is the screen's first showing, which on_mount already loads
        if self._shown_before and self.app.online:
            self.refresh_data(quiet=True)
        self._shown_before = True

    def timed_refresh(self) -> None:
        # (not ``auto_refresh``: that name is Textual's own repaint interval on every widget)
        if self.app.online and self.app.screen is self:
            self.refresh_data(quiet=True)

    def refresh_data(self, quiet: bool = False) -> None:
        return None

    @property
    def client(self) -> Client:
        return self.app.client
