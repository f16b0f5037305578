from __future__ import annotations

from textual.screen import Screen

from ..api import ApiMixin


class BaseScreen(ApiMixin, Screen):
    """A screen that loads from the server; ``refresh_data`` is called again on reconnect."""

    AUTO_REFRESH: float | None = None

    def on_mount(self) -> None:
        self.refresh_data()
        if self.AUTO_REFRESH:
            self.set_interval(self.AUTO_REFRESH, self.auto_refresh)

    def auto_refresh(self) -> None:
        if self.app.online and self.app.screen is self:
            self.refresh_data(quiet=True)

    def refresh_data(self, quiet: bool = False) -> None:
        return None

    @property
    def client(self):
        return self.app.client
