"""Live charts of one model: request rate, latency percentiles, error rate, per model or per version."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from modelbay.metrics.series import Series
from modelbay.metrics.service import ModelMetrics

from .. import format as fmt
from .base import BaseScreen

WINDOWS = ("5m", "15m", "1h", "6h", "24h")
COLORS = ("cyan", "magenta", "green", "yellow", "red", "blue", "orange", "white")


class Chart(PlotextPlot):
    """A line chart over 'minutes ago'; ``lines`` is [(label, [values or None])]."""

    def show(self, title: str, xs: list[float], lines: list[tuple[str, list[float | None]]], unit: str = "") -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        plt.xlabel("minutes ago")
        any_data = False
        for i, (label, ys) in enumerate(lines):
            pts = [(x, y) for x, y in zip(xs, ys, strict=False) if y is not None]
            if pts:
                any_data = True
                plt.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    label=label,
                    color=COLORS[i % len(COLORS)],
                    marker="braille",
                )
        if not any_data:
            plt.scatter([xs[0] if xs else 0], [0], marker=" ")
            plt.title(f"{title} — no data")
        if xs:
            plt.xlim(min(xs), 0)
        plt.ylim(0, None) if any_data else plt.ylim(0, 1)
        self.refresh()


class MetricsScreen(BaseScreen):
    AUTO_REFRESH = 5.0
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("w", "window", "Window"),
        Binding("v", "versions", "By version"),
        Binding("a", "accuracy", "Errors/accuracy"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, model: str, window: str = "15m", by_version: bool = False) -> None:
        super().__init__(name=f"metrics-{model}")
        self.model = model
        self.window = window
        self.by_version = by_version
        self.data: ModelMetrics | None = None
        self._warned: set[str] = set()
        self.show_accuracy = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="metrics-head", classes="head")
        with Grid(id="charts"):
            yield Chart(id="chart-rate")
            yield Chart(id="chart-latency")
            yield Chart(id="chart-errors")
            yield DataTable(id="metrics-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="metrics-phases", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for label, width in [("ver", 3), ("req", 5), ("err", 5), ("p95", 6), ("acc", 5), ("cold", 4)]:
            t.add_column(label, width=width)
        self._head()
        super().on_mount()

    def _head(self) -> None:
        windows = " ".join(f"[reverse]{w}[/]" if w == self.window else w for w in WINDOWS)
        mode = "per version" if self.by_version else "whole model"
        self.query_one("#metrics-head", Static).update(f"[b]{escape(self.model)}[/]  window {windows}  ·  {mode}")

    def refresh_data(self, quiet: bool = False) -> None:
        self.api(
            lambda: self.client.metrics(self.model, self.window, by_version=True),
            then=self._show,
            group="metrics",
            exclusive=True,
            quiet=quiet,
        )

    def _show(self, data: ModelMetrics) -> None:
        self.data = data
        self._head()
        o = data.overall
        xs = [(t - data.end) / 60 for t in o.timestamps]
        versions = sorted(data.versions.items(), key=lambda kv: int(kv[0]))
        rate, lat, err = (self.query_one(f"#chart-{k}", Chart) for k in ("rate", "latency", "errors"))
        third_title = "feedback accuracy %" if self.show_accuracy else "error rate %"

        def third(s: Series) -> list[float | None]:
            values = s.accuracy if self.show_accuracy else s.error_rate
            return [None if e is None else e * 100 for e in values]

        if self.by_version and versions:
            rate.show("requests/min", xs, [(f"v{v}", [r * 60 for r in s.rate_per_s]) for v, s in versions])
            lat.show("p95 latency ms", xs, [(f"v{v}", s.p95_ms) for v, s in versions])
            err.show(third_title, xs, [(f"v{v}", third(s)) for v, s in versions])
        else:
            rate.show("requests/min", xs, [("all", [r * 60 for r in o.rate_per_s])])
            lat.show("latency ms", xs, [("p50", o.p50_ms), ("p95", o.p95_ms), ("p99", o.p99_ms)])
            err.show(third_title, xs, [("all", third(o))])
        tot = o.totals

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        phases = " ".join(
            f"{label} {num(tot.mean_ms.get(k))}"
            for label, k in (("fetch", "fetch"), ("pre", "preprocess"), ("infer", "inference"), ("post", "postprocess"))
        )
        errs = ", ".join(f"{k} {n}" for k, n in tot.errors_by_type.items() if n) or "no errors"
        self.query_one("#metrics-phases", Static).update(escape(f"mean ms: {phases} load {num(tot.load_ms)} · {errs}"))
        t = self.query_one(DataTable)
        t.clear()
        for label, s in [("all", o)] + [(f"v{v}", s) for v, s in versions]:
            tt = s.totals
            t.add_row(
                label,
                str(tt.requests),
                fmt.pct(tt.error_rate),
                fmt.ms(tt.p95_ms),
                fmt.pct(tt.accuracy),
                str(tt.cold_starts),
            )
        for w in o.warnings:
            if w not in self._warned:
                self._warned.add(w)
                self.notify(w, severity="warning", timeout=6)

    def action_window(self) -> None:
        self.window = WINDOWS[(WINDOWS.index(self.window) + 1) % len(WINDOWS)]
        self._head()
        self.refresh_data()

    def action_versions(self) -> None:
        self.by_version = not self.by_version
        self._head()
        if self.data:
            self._show(self.data)

    def action_accuracy(self) -> None:
        self.show_accuracy = not self.show_accuracy
        if self.data:
            self._show(self.data)

    def action_refresh(self) -> None:
        self.refresh_data()
