from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

from ..api import ApiMixin

if TYPE_CHECKING:
    from textual import getters

    from ..app import ModelbayApp


class BaseScreen(ApiMixin, Screen):
    """A screen that loads from the server; ``refresh_data`` is called again on reconnect."""

    if TYPE_CHECKING:
        app = getters.app(ModelbayApp)  # self.app typed as modelbay's (Textual's says App[object])

    AUTO_REFRESH: float | None = None

    def on_mount(self) -> None:
        self.refresh_data()
        if self.AUTO_REFRESH:
            self.set_interval(self.AUTO_REFRESH, self._refresh_tick)

    def _refresh_tick(self) -> None:  # not auto_refresh: Textual's DOMNode has a property of that name
        if self.app.online and self.app.screen is self:
            self.refresh_data(quiet=True)

    def refresh_data(self, quiet: bool = False) -> None:
        return None

    @property
    def client(self):
        return self.app.client
