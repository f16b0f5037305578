from __future__ import annotations

from textual.screen import Screen

from ..api import ApiMixin


class BaseScreen(ApiMixin, Screen):
    """A screen that loads from the server; ``refresh_data`` runs again on a timer (``AUTO_REFRESH`` seconds,
    while the screen is the one shown), on coming back to the screen, and on reconnect."""

    AUTO_REFRESH: float | None = None

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._shown_before = False

    def on_mount(self) -> None:
        self.refresh_data()
        if self.AUTO_REFRESH:
            self.set_interval(self.AUTO_REFRESH, self.auto_refresh)

    def on_screen_resume(self) -> None:
        # the first resume is the screen's first showing, which on_mount already loads
        if self._shown_before and self.app.online:
            self.refresh_data(quiet=True)
        self._shown_before = True

    def auto_refresh(self) -> None:
        if self.app.online and self.app.screen is self:
            self.refresh_data(quiet=True)

    def refresh_data(self, quiet: bool = False) -> None:
        return None

    @property
    def client(self):
        return self.app.client
