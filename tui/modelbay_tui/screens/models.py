"""Every model at a glance: aliases, latest version, traffic and errors over the last hour."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static

from modelbay.metrics.series import ModelTotals
from modelbay.schemas import ModelSummary

from .. import format as fmt
from .base import BaseScreen


class ModelsScreen(BaseScreen):
    AUTO_REFRESH = 5.0
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("enter", "open", "Open", show=False),
        Binding("f", "filter", "Filter"),
        Binding("g", "metrics", "Metrics"),
        Binding("t", "playground", "Try"),
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "clear_search", "Clear", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(name="models")
        self.rows: list[ModelSummary] = []
        self.traffic: dict[str, ModelTotals] = {}
        self.loaded = False
        self.filter = "all"
        self._status = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ filter by name or alias (e.g. prod, iris)", id="search", compact=True)
        yield DataTable(id="models", cursor_type="row", zebra_stripes=True)
        yield Static("", id="models-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        t.add_column("model", key="model", width=18)
        t.add_column("aliases", key="aliases", width=18)
        t.add_column("latest", key="latest", width=6)
        t.add_column("vers", key="vers", width=4)
        t.add_column("req/1h", key="req", width=7)
        t.add_column("err", key="err", width=6)
        t.add_column("p95", key="p95", width=7)
        t.focus()
        super().on_mount()
        self.set_interval(1.0, self.show_activity)  # the demo seeding's estimate counts down

    def refresh_data(self, quiet: bool = False) -> None:
        def load() -> tuple[list[ModelSummary], dict[str, ModelTotals]]:
            models = self.client.models()
            try:
                traffic = self.client.metrics_overview("1h").models
            except Exception:  # metrics are a bonus on this screen; the list still shows
                traffic = {}
            return models, traffic

        self.api(load, then=self._show, group="models", exclusive=True, quiet=quiet)

    def _show(self, data: tuple[list[ModelSummary], dict[str, ModelTotals]]) -> None:
        self.rows, self.traffic = data
        self.loaded = True
        self._render_rows()

    FILTERS = ("all", "serving", "erroring", "production")

    def _matches(self, m: ModelSummary, needle: str) -> bool:
        tr = self.traffic.get(m.name, ModelTotals())
        if self.filter == "serving" and not tr.requests:
            return False
        if self.filter == "erroring" and not tr.errors:
            return False
        if self.filter == "production" and "production" not in m.aliases:
            return False
        if not needle:
            return True
        hay = " ".join([m.name, *m.aliases.keys()]).lower()
        return all(part in hay for part in needle.lower().split())

    def _render_rows(self) -> None:
        t = self.query_one(DataTable)
        needle = self.query_one("#search", Input).value.strip()
        keep = t.cursor_row
        t.clear()
        shown = [m for m in self.rows if self._matches(m, needle)]
        for m in shown:
            tr = self.traffic.get(m.name, ModelTotals())
            aliases = " ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())) or "-"
            t.add_row(
                m.name,
                aliases,
                str(m.latest_version),
                str(m.version_count),
                str(tr.requests),
                fmt.pct(tr.error_rate),
                fmt.ms(tr.p95_ms),
                key=m.name,
            )
        if shown:
            t.move_cursor(row=min(keep, len(shown) - 1))
        total = len(self.rows)
        narrowed = needle or self.filter != "all"
        status = f"{len(shown)} of {total} models" if narrowed else f"{total} models"
        if self.filter != "all":
            status += f"  ·  filter: {self.filter} (f)"
        if self.loaded and not total:
            status = "no models yet" if self.app.seeding_line() else "no models yet: press u to upload one"
        self._status = status
        self.show_activity()

    def show_activity(self) -> None:
        """The status line, with what the demo seeding is doing while it runs."""
        activity = self.app.seeding_line()
        line = f"{self._status}  ·  {activity}" if activity and self._status else (activity or self._status)
        self.query_one("#models-status", Static).update(escape(line))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._render_rows()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_model(str(event.row_key.value))

    def selected(self) -> str | None:
        t = self.query_one(DataTable)
        if not t.row_count:
            self.notify("no model selected", severity="warning")
            return None
        return str(t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value)

    def action_filter(self) -> None:
        self.filter = self.FILTERS[(self.FILTERS.index(self.filter) + 1) % len(self.FILTERS)]
        self._render_rows()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        search.value = ""
        self.query_one(DataTable).focus()

    def action_open(self) -> None:
        if name := self.selected():
            self.app.open_model(name)

    def action_metrics(self) -> None:
        if name := self.selected():
            self.app.open_metrics(name)

    def action_playground(self) -> None:
        if name := self.selected():
            self.app.open_playground(name)

    def action_refresh(self) -> None:
        self.refresh_data()
