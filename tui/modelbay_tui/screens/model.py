"""One model: its versions, the alias actions (promote, rollback, delete, history) and its canary
(start, ramp, promote, abort, each behind a confirmation; the split's live comparison and guard rails)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from modelbay.manifest import Manifest
from modelbay.registry import rollback_target
from modelbay.schemas import AliasState, GuardRails, GuardVerdict, ModelDetail
from modelbay.units import ms, percent, search_summary

from .. import format as fmt
from ..modals import ConfirmModal, HistoryModal, PromptModal
from .base import BaseScreen


class ModelScreen(BaseScreen):
    AUTO_REFRESH = 10.0
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("p", "promote", "Promote"),
        Binding("b", "rollback", "Rollback"),
        Binding("d", "delete", "Delete"),
        Binding("h", "history", "History"),
        Binding("c", "canary_start", "Canary"),
        Binding("m", "canary_ramp", "Ramp"),
        Binding("o", "canary_promote", "Promote canary"),
        Binding("a", "canary_abort", "Abort canary"),
        Binding("g", "metrics", "Metrics"),
        Binding("t", "playground", "Try"),
        Binding("r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, model: str) -> None:
        super().__init__(name=f"model-{model}")
        self.model = model
        self.detail: ModelDetail | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"[b]{escape(self.model)}[/]", id="model-head", classes="head")
        yield Static("", id="canary", classes="canary")
        yield DataTable(id="versions", cursor_type="row", zebra_stripes=True)
        yield Static("", id="model-info", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for label, key, width in [
            ("ver", "ver", 3),
            ("created UTC", "created", 11),
            ("size", "size", 6),
            ("prec", "prec", 8),
            ("gate", "gate", 16),
            ("sha256", "sha", 8),
            ("aliases", "aliases", 12),
        ]:
            t.add_column(label, key=key, width=width)
        t.focus()
        super().on_mount()

    def refresh_data(self, quiet: bool = False) -> None:
        self.api(self.client.model, self.model, then=self._show, group="model", exclusive=True, quiet=quiet)

    @property
    def aliases(self) -> dict[str, int]:
        return self.detail.aliases if self.detail else {}

    def _show(self, detail: ModelDetail) -> None:
        self.detail = detail
        t = self.query_one(DataTable)
        keep = t.cursor_row
        t.clear()
        versions = sorted(detail.versions, key=lambda m: -m.version)
        for m in versions:
            t.add_row(
                str(m.version),
                fmt.when(m.created_at),
                fmt.size(m.size),
                fmt.precision(m.quantization),
                fmt.gate(m.metrics),
                m.sha256[:8],
                ",".join(detail.aliases_of(m.version) + _canaried(detail, m.version)) or "-",
                key=str(m.version),
            )
        if versions:
            t.move_cursor(row=min(keep, len(versions) - 1))
        aliases = "  ".join(f"[b]{escape(a)}[/]→{v}" for a, v in sorted(detail.aliases.items())) or "no aliases"
        self.query_one("#model-head", Static).update(f"[b]{escape(self.model)}[/]  {len(versions)} versions  {aliases}")
        self._describe()
        self._show_canary(detail)

    # ------------------------------------------------------------ canary panel
    def canary_alias(self) -> str:
        """The alias the canary keys act on: the one with a canary, else production."""
        canaries = self.detail.canaries if self.detail else {}
        return sorted(canaries)[0] if canaries else "production"

    def _show_canary(self, detail: ModelDetail) -> None:
        panel = self.query_one("#canary", Static)
        if detail.canaries:
            alias = self.canary_alias()
            c = detail.canaries[alias]
            stable = detail.aliases.get(alias)
            panel.update(
                f"[b]{escape(alias)}[/] {fmt.version(stable)} {100 - c.percent:g}% + "
                f"[b]canary v{c.version} {c.percent:g}%[/]  {_rails(c.guard)}"
            )
            self.api(self.client.canary_status, self.model, alias, then=self._show_verdict, group="canary", quiet=True)
            return
        ended = [(a, e) for a, e in sorted(detail.last_changes.items()) if e["action"] == "abort"]
        if ended:
            alias, e = ended[0]
            why = e.get("reason") or f"by {e['by'] or '-'}"
            panel.update(
                f"[red]canary aborted[/] on [b]{escape(alias)}[/] (back on {fmt.version(e['to'])}): {escape(why)}"
            )
        else:
            panel.update("")
        panel.display = bool(detail.canaries or ended)

    def _show_verdict(self, v: GuardVerdict) -> None:
        if v.state == "none":
            return
        mark = {"breached": "[red]BREACHED[/]", "holding": "[green]holding[/]", "waiting": "[yellow]waiting[/]"}
        state = mark.get(v.state, v.state)

        def side(label: str, f: dict[str, float | int | None]) -> str:
            acc = f.get("accuracy")
            return (
                f"{label:>4} {f.get('requests') or 0:>5} req  err {percent(_num(f.get('error_rate')))}  "
                f"p95 {ms(_num(f.get('p95_ms')))}  acc {percent(_num(acc))}"
            )

        reasons = f" ({escape('; '.join(v.reasons))})" if v.reasons else ""
        canary = self.detail.canaries.get(v.alias) if self.detail else None
        rails = _rails(canary.guard) if canary else ""
        self.query_one("#canary", Static).update(
            f"[b]{escape(v.alias)}[/] {fmt.version(v.stable_version)} {100 - (v.percent or 0):g}% + "
            f"[b]canary v{v.canary_version} {v.percent or 0:g}%[/]  guard {state}{reasons}\n"
            f"  {side(fmt.version(v.stable_version), v.stable)}\n"
            f"  {side(f'v{v.canary_version}', v.canary)}   {rails}"
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe()

    def _describe(self) -> None:
        m = self.selected_manifest(quiet=True)
        info = self.query_one("#model-info", Static)
        if m is None:
            info.update("no versions")
            return
        ins = ", ".join(f"{i.name}:{i.dtype}{fmt.shape(i.shape)}" for i in m.inputs)
        outs = ", ".join(o.name for o in m.outputs)
        desc = f" — {m.description[:40]}" if m.description else ""
        searched = search_summary(m.metrics)
        head = f"v{m.version} {m.task}  in {ins}  out {outs}{desc}"
        info.update(escape(head + (f"\n{searched}" if searched else "")))

    def selected_manifest(self, quiet: bool = False) -> Manifest | None:
        t = self.query_one(DataTable)
        if not self.detail or not t.row_count:
            if not quiet:
                self.notify("no version selected", severity="warning")
            return None
        return self.detail.manifest(int(str(t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value)))

    def _done(self, message: str):
        def then(_: Any) -> None:
            self.notify(message)
            self.refresh_data()

        return then

    # ------------------------------------------------------------ actions
    def action_promote(self) -> None:
        m = self.selected_manifest()
        if m is None:
            return

        def chosen(alias: str | None) -> None:
            if not alias:
                return
            current = self.aliases.get(alias)
            # compare-and-swap against what this screen showed: a concurrent change is refused, not lost
            self.api(
                lambda: self.client.set_alias(self.model, alias, m.version, expected_version=current),
                then=self._done(f"{self.model}:{alias} → v{m.version} (was {fmt.version(current)})"),
            )

        self.app.push_screen(
            PromptModal(f"Promote {self.model} v{m.version}", "alias to point at it:", "production"), chosen
        )

    def action_rollback(self) -> None:
        aliases = self.aliases
        if not aliases:
            self.notify("this model has no aliases to roll back", severity="warning")
            return
        default = "production" if "production" in aliases else sorted(aliases)[0]

        def chosen(alias: str | None) -> None:
            if alias:
                self.api(self.client.alias_history, self.model, alias, then=lambda s: self._confirm_rollback(s))

        self.app.push_screen(PromptModal(f"Roll back an alias of {self.model}", "alias:", default), chosen)

    def _confirm_rollback(self, state: AliasState) -> None:
        target = rollback_target(state.history)
        if target is None:
            self.notify(f"{state.alias} has no earlier version to roll back to", severity="warning")
            return
        frm, to = fmt.version(state.version), fmt.version(target)
        body = f"{self.model}:{state.alias}   {frm}  →  {to}"

        def answer(ok: bool | None) -> None:
            if ok:
                self.api(
                    self.client.rollback,
                    self.model,
                    state.alias,
                    then=self._done(f"rolled back {state.alias}: {frm} → {to}"),
                )

        self.app.push_screen(ConfirmModal("Roll back?", body, "Roll back"), answer)

    def action_delete(self) -> None:
        m = self.selected_manifest()
        if m is None:
            return
        pointing = self.detail.aliases_of(m.version) if self.detail else []
        if pointing:
            self.notify(f"v{m.version} is aliased by {', '.join(pointing)}: move the alias first", severity="warning")
            return

        def answer(ok: bool | None) -> None:
            if ok:
                self.api(
                    self.client.delete_version,
                    self.model,
                    m.version,
                    then=self._done(f"deleted {self.model} v{m.version}"),
                )

        self.app.push_screen(
            ConfirmModal(
                "Delete version?",
                f"{self.model} v{m.version} ({fmt.size(m.size)}, {m.sha256[:12]}) — this cannot be undone",
                "Delete",
                danger=True,
            ),
            answer,
        )

    def action_history(self) -> None:
        aliases = self.aliases
        default = "production" if "production" in aliases or not aliases else sorted(aliases)[0]

        def show(state: AliasState) -> None:
            self.app.push_screen(HistoryModal(state))

        def chosen(alias: str | None) -> None:
            if alias:
                self.api(self.client.alias_history, self.model, alias, then=show)

        self.app.push_screen(PromptModal(f"Alias history of {self.model}", "alias:", default), chosen)

    def action_canary_start(self) -> None:
        m = self.selected_manifest()
        if m is None or self.detail is None:
            return
        alias = self.canary_alias()
        stable = self.aliases.get(alias)
        if stable is None:
            self.notify(f"{alias} is not set: promote a version to it first", severity="warning")
            return

        def chosen(text: str | None) -> None:
            try:
                share = float(text or "")
            except ValueError:
                self.notify(f"{text!r} is not a percentage", severity="warning")
                return
            body = f"{self.model}:{alias}  v{stable} {100 - share:g}%  +  canary v{m.version} {share:g}%"

            def answer(ok: bool | None) -> None:
                if ok:
                    self.api(
                        lambda: self.client.start_canary(self.model, alias, m.version, share, expected_version=stable),
                        then=self._done(f"canary v{m.version} at {share:g}% on {alias}"),
                    )

            self.app.push_screen(ConfirmModal("Start canary?", body, "Start"), answer)

        self.app.push_screen(
            PromptModal(f"Canary {self.model} v{m.version} on {alias}", "share of traffic (%):", "10"), chosen
        )

    def _running_canary(self) -> tuple[str, int] | None:
        alias = self.canary_alias()
        c = self.detail.canaries.get(alias) if self.detail else None
        if c is None:
            self.notify("no canary is running on this model", severity="warning")
            return None
        return alias, c.version

    def action_canary_ramp(self) -> None:
        running = self._running_canary()
        if running is None:
            return
        alias, v = running

        def chosen(text: str | None) -> None:
            try:
                share = float(text or "")
            except ValueError:
                self.notify(f"{text!r} is not a percentage", severity="warning")
                return

            def answer(ok: bool | None) -> None:
                if ok:
                    self.api(
                        lambda: self.client.ramp_canary(self.model, alias, share, expected_canary=v),
                        then=self._done(f"canary v{v} at {share:g}% on {alias}"),
                    )

            self.app.push_screen(ConfirmModal("Ramp canary?", f"{self.model}:{alias} canary v{v} → {share:g}%"), answer)

        self.app.push_screen(PromptModal(f"Ramp canary v{v} on {alias}", "new share (%):", "25"), chosen)

    def action_canary_promote(self) -> None:
        running = self._running_canary()
        if running is None:
            return
        alias, v = running

        def answer(ok: bool | None) -> None:
            if ok:
                self.api(
                    lambda: self.client.promote_canary(self.model, alias, expected_canary=v),
                    then=self._done(f"{self.model}:{alias} → v{v} (canary promoted)"),
                )

        self.app.push_screen(
            ConfirmModal("Promote canary?", f"{self.model}:{alias}: all traffic to v{v}", "Promote"), answer
        )

    def action_canary_abort(self) -> None:
        running = self._running_canary()
        if running is None:
            return
        alias, v = running
        stable = self.aliases.get(alias)

        def answer(ok: bool | None) -> None:
            if ok:
                self.api(
                    lambda: self.client.abort_canary(self.model, alias, expected_canary=v, reason="aborted in the TUI"),
                    then=self._done(f"canary v{v} aborted: {alias} back on v{fmt.version(stable)}"),
                )

        self.app.push_screen(
            ConfirmModal(
                "Abort canary?",
                f"{self.model}:{alias}: all traffic back to v{fmt.version(stable)}",
                "Abort",
                danger=True,
            ),
            answer,
        )

    def action_metrics(self) -> None:
        self.app.open_metrics(self.model)

    def action_playground(self) -> None:
        m = self.selected_manifest(quiet=True)
        self.app.open_playground(self.model, str(m.version) if m else None)

    def action_refresh(self) -> None:
        self.refresh_data()


def _num(v: float | int | None) -> float | None:
    return None if v is None else float(v)


def _rails(guard: GuardRails | None) -> str:
    if guard is None:
        return "no guard rails"
    rails = []
    if guard.max_error_rate is not None:
        rails.append(f"err≤{guard.max_error_rate:.0%}")
    if guard.max_p95_ratio is not None:
        rails.append(f"p95≤{guard.max_p95_ratio:g}x")
    if guard.min_accuracy is not None:
        rails.append(f"acc≥{guard.min_accuracy:.0%}")
    return f"rails {' '.join(rails)} /{guard.window}"


def _canaried(detail: ModelDetail, version: int) -> list[str]:
    """'production~10%': the aliases that send a share of their traffic to this version as a canary."""
    return [f"{a}~{c.percent:g}%" for a, c in sorted(detail.canaries.items()) if c.version == version]
