"""``modelbay canary start|ramp|promote|abort|status|check``: a share of an alias's traffic on a new version."""

from __future__ import annotations

import typer
from rich.table import Table

from ..schemas import AliasState, GuardRails, GuardVerdict
from .base import App, ctx_obj
from .output import Col, emit, escape, show, table

app = App()
canary_app = App(help="Canary a version on an alias: a share of its traffic, guard rails, automatic rollback.")
app.add_typer(canary_app, name="canary")

ALIAS = typer.Option("production", "--alias", "-a", help="The alias to split.")


def split_text(s: AliasState) -> str:
    """'3 (90%) + canary 4 (10%)', or just the version."""
    if s.canary is None:
        return show(s.version)
    c = s.canary
    return f"{show(s.version)} ({100 - c.percent:g}%) + canary {c.version} ({c.percent:g}%)"


def canary_line(s: AliasState) -> str:
    last = s.last_change
    why = f"  ({escape(last['reason'])})" if last and last.get("reason") else ""
    action = last["action"] if last else "-"
    return f"[bold]{escape(s.model)}:{escape(s.alias)}[/] {escape(action)}: {escape(split_text(s))}{why}"


@canary_app.command("start")
def start(
    ctx: typer.Context,
    name: str,
    version: int = typer.Option(..., "--version", "-v", help="The version to canary."),
    percent: float = typer.Option(10.0, "--percent", help="Its share of the alias's traffic (0-100, exclusive)."),
    alias: str = ALIAS,
    max_error_rate: float | None = typer.Option(None, help="Guard rail: abort above this error rate (0-1)."),
    max_p95_ratio: float | None = typer.Option(None, help="Guard rail: abort above this p95 / stable p95."),
    min_accuracy: float | None = typer.Option(None, help="Guard rail: abort below this feedback accuracy (0-1)."),
    window: str = typer.Option("5m", help="Guard rails read the metrics of this window."),
    min_requests: int = typer.Option(20, help="No verdict before the canary served this many requests."),
    ramp: str | None = typer.Option(None, help="Shares to climb while the rails hold, e.g. 25,50,100."),
    expect: int | None = typer.Option(None, help="Only if the alias's stable version is this one."),
) -> None:
    """Send PERCENT of ALIAS's traffic to VERSION; guard rails abort it automatically."""
    obj = ctx_obj(ctx)
    guard = GuardRails(
        max_error_rate=max_error_rate,
        max_p95_ratio=max_p95_ratio,
        min_accuracy=min_accuracy,
        window=window,
        min_requests=min_requests,
    )
    try:
        steps = [float(p) for p in ramp.split(",") if p.strip()] if ramp else []
    except ValueError:
        raise typer.BadParameter(f"--ramp {ramp!r}: expected percentages such as 25,50,100") from None
    with obj.client() as c:
        s = c.start_canary(
            name,
            alias,
            version,
            percent,
            guard=None if guard.empty else guard,
            steps=steps,
            **({"expected_version": expect} if expect is not None else {}),
        )
    emit(obj.as_json, s, canary_line(s))


@canary_app.command("ramp")
def ramp_cmd(
    ctx: typer.Context,
    name: str,
    percent: float = typer.Option(..., "--percent", help="The canary's new share (100 promotes)."),
    alias: str = ALIAS,
) -> None:
    """Change the canary's share of the alias's traffic."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        s = c.ramp_canary(name, alias, percent)
    emit(obj.as_json, s, canary_line(s))


@canary_app.command("promote")
def promote(ctx: typer.Context, name: str, alias: str = ALIAS) -> None:
    """All of the alias's traffic to its canary."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        s = c.promote_canary(name, alias)
    emit(obj.as_json, s, canary_line(s))


@canary_app.command("abort")
def abort(
    ctx: typer.Context,
    name: str,
    alias: str = ALIAS,
    reason: str | None = typer.Option(None, help="Why, for the alias history."),
) -> None:
    """All of the alias's traffic back to its stable version."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        s = c.abort_canary(name, alias, reason=reason)
    emit(obj.as_json, s, canary_line(s))


def verdict_table(v: GuardVerdict) -> Table:
    title = f"{v.model}:{v.alias}  {v.state}" + (f"  canary {v.canary_version} at {v.percent:g}%" if v.percent else "")
    keys = ("requests", "errors", "error_rate", "p95_ms", "feedback", "accuracy")
    rows = [[k, show(v.stable.get(k)), show(v.canary.get(k))] for k in keys]
    rows += [["reason", "", r] for r in v.reasons]
    return table(
        title, ["", Col(f"stable {show(v.stable_version)}", right=True), Col("canary", right=True, flex=True)], rows
    )


@canary_app.command("status")
def status(ctx: typer.Context, name: str, alias: str = ALIAS) -> None:
    """The split, each side's figures and the guard rails' verdict (without acting on it)."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        v = c.canary_status(name, alias)
    emit(obj.as_json, v, verdict_table(v) if v.state != "none" else f"{escape(name)}:{escape(alias)} has no canary")


@canary_app.command("check")
def check(ctx: typer.Context, name: str, alias: str = ALIAS) -> None:
    """Judge the guard rails now and act: abort on a breach, climb the ramp while they hold."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        v = c.check_canary(name, alias)
    emit(obj.as_json, v, verdict_table(v) if v.state != "none" else f"{escape(name)}:{escape(alias)} has no canary")


shadow_app = App(help="Shadow an alias: a version also runs a sample of its requests, answers compared and discarded.")
app.add_typer(shadow_app, name="shadow")


@shadow_app.command("start")
def shadow_start(
    ctx: typer.Context,
    name: str,
    version: int = typer.Option(..., "--version", "-v", help="The version that shadows."),
    rate: float = typer.Option(0.1, "--rate", help="Share of the alias's requests it also runs (0-1]."),
    alias: str = ALIAS,
) -> None:
    """Let VERSION also run RATE of ALIAS's requests, after they are answered."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        s = c.set_shadow(name, alias, version, rate)
    emit(obj.as_json, s, f"{escape(name)}:{escape(alias)} shadowed by v{version} at {rate:.0%}")


@shadow_app.command("stop")
def shadow_stop(ctx: typer.Context, name: str, alias: str = ALIAS) -> None:
    """Stop shadowing ALIAS."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        s = c.stop_shadow(name, alias)
    emit(obj.as_json, s, f"{escape(name)}:{escape(alias)} is not shadowed")


@shadow_app.command("status")
def shadow_status(ctx: typer.Context, name: str, alias: str = ALIAS) -> None:
    """The shadow against the primary: runs, errors, agreement, latency."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        f = c.shadow_figures(name, alias)
    if f.version is None:
        emit(obj.as_json, f, f"{escape(name)}:{escape(alias)} is not shadowed")
        return
    rows = [
        ["runs", show(f.runs)],
        ["errors", show(f.errors)],
        ["dropped", show(f.dropped)],
        ["agreement", "-" if f.agreement is None else f"{f.agreement:.1%} of {f.compared}"],
        ["mean cosine", show(f.mean_cosine)],
        ["max abs diff", show(f.max_abs_diff)],
        ["primary mean ms", show(f.primary_mean_ms)],
        ["shadow mean ms", show(f.shadow_mean_ms)],
    ]
    emit(obj.as_json, f, table(f"{name}:{alias} shadowed by v{f.version} at {f.rate:.0%}", ["", "value"], rows))
