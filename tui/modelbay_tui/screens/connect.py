"""Connection profiles: pick one to switch servers, or add a URL and API key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label

from modelbay.errors import ModelbayError

if TYPE_CHECKING:
    from textual import getters

    from ..app import ModelbayApp


class ConnectScreen(ModalScreen["str | None"]):
    """Dismissed with the profile to switch to (the app switches once the dialog is gone)."""

    if TYPE_CHECKING:
        app = getters.app(ModelbayApp)  # self.app typed as modelbay's (Textual's says App[object])

    BINDINGS = [Binding("escape", "close", "Close"), Binding("delete", "remove", "Remove")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="connect"):
            yield Label("Connections — enter switches, or add one below", classes="dialog-title")
            yield DataTable(id="profiles", cursor_type="row", zebra_stripes=True)
            with Horizontal(classes="row"):
                yield Input(placeholder="name", id="cx-name", compact=True)
                yield Input(placeholder="https://… or http://127.0.0.1:8080", id="cx-url", compact=True)
            yield Input(placeholder="API key (optional)", password=True, id="cx-key", compact=True)
            with Horizontal(classes="buttons"):
                yield Button("Save & connect", id="cx-save", variant="primary")
                yield Button("Close (esc)", id="cx-close")

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        t.add_columns(" ", "name", "url", "key")
        self._fill()
        t.focus()

    def _fill(self) -> None:
        t = self.query_one(DataTable)
        t.clear()
        profiles = self.app.profiles
        for p in profiles.profiles.values():
            t.add_row("●" if p.name == self.app.profile.name else " ", p.name, p.url, p.masked_key, key=p.name)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cx-close":
            self.dismiss(None)
            return
        name = self.query_one("#cx-name", Input).value.strip()
        url = self.query_one("#cx-url", Input).value.strip()
        key = self.query_one("#cx-key", Input).value.strip()
        try:
            self.app.profiles.add(name, url, key)
            self.app.save_profiles()
        except ModelbayError as e:
            self.notify(e.message, severity="error")
            return
        self.dismiss(name)

    def action_remove(self) -> None:
        t = self.query_one(DataTable)
        if not t.row_count:
            return
        name = str(t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value)
        if name == self.app.profile.name:
            self.notify("that profile is in use; switch first", severity="warning")
            return
        self.app.profiles.remove(name)
        self.app.save_profiles()
        self._fill()

    def action_close(self) -> None:
        self.dismiss(None)
