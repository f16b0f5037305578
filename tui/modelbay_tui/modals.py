"""Small modal dialogs: confirm, prompt, alias history and help."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static

from modelbay.schemas import AliasState

from .format import version, when


class ConfirmModal(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, title: str, body: str, yes: str = "Yes", danger: bool = False) -> None:
        super().__init__()
        self.title_text, self.body, self.yes, self.danger = title, body, yes, danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(escape(self.title_text), classes="dialog-title")
            yield Label(escape(self.body), id="confirm-body")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error" if self.danger else "primary")
                yield Button("Cancel (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class PromptModal(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, label: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text, self.label, self.value, self.placeholder = title, label, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(escape(self.title_text), classes="dialog-title")
            yield Label(escape(self.label))
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            with Horizontal(classes="buttons"):
                yield Button("OK (enter)", id="ok", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.query_one(Input).value.strip() or None if event.button.id == "ok" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HistoryModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,h", "close", "Close")]

    def __init__(self, state: AliasState) -> None:
        super().__init__()
        self.state = state

    def compose(self) -> ComposeResult:
        s = self.state
        with Vertical(classes="dialog wide"):
            yield Label(escape(f"{s.model}:{s.alias} → {version(s.version)}"), classes="dialog-title")
            yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
            yield Button("Close (esc)", id="close")

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        t.add_columns("when (UTC)", "action", "from", "to", "by")
        for e in reversed(self.state.history):
            t.add_row(
                when(e["at"]),
                e["action"],
                "-" if e["from"] is None else str(e["from"]),
                "-" if e["to"] is None else str(e["to"]),
                escape(e["by"] or "-"),
            )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


KEYS = [
    ("enter", "models", "open the model"),
    ("/  f", "models", "search; filter serving/erroring/prod"),
    ("p", "model", "promote the selected version to an alias"),
    ("b", "model", "roll an alias back (shows from → to first)"),
    ("d", "model", "delete the selected, unaliased version"),
    ("h", "model", "alias history"),
    ("g", "models, model", "live metrics"),
    ("t", "models, model", "playground: send an input"),
    ("w v a", "metrics", "window; per version; errors or accuracy"),
    ("^s ^e", "playground", "send; a fresh example input"),
    ("u", "anywhere", "upload a model (^u sends it)"),
    ("c", "anywhere", "connections: switch or add a server"),
    ("^t  ^p", "anywhere", "light/dark theme; command palette"),
    ("esc  q", "anywhere", "back; quit"),
]


def help_table() -> Table:
    t = Table(box=None, padding=(0, 1), show_header=True, header_style="bold")
    t.add_column("key", style="bold cyan", no_wrap=True)
    t.add_column("where", style="dim", no_wrap=True)
    t.add_column("does")
    for row in KEYS:
        t.add_row(*row)
    return t


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide help"):
            yield Label("modelbay — keys", classes="dialog-title")
            yield Static(help_table())
            yield Label("Calls run in the background; a lost server shows in the title.", classes="status-wrap")

    def action_close(self) -> None:
        self.dismiss(None)
