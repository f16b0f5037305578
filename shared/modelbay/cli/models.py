"""``modelbay models|versions|show|delete|rollback`` and ``modelbay alias ...``."""

from __future__ import annotations

import typer

from ..refs import parse_ref
from ..schemas import AliasChange, AliasState
from ..units import precision
from .base import App, ctx_obj
from .output import Col, emit, escape, note, show, size, table, when

app = App()
alias_app = App(help="Point aliases such as 'production' at versions.")
app.add_typer(alias_app, name="alias")


@app.command()
def models(ctx: typer.Context) -> None:
    """List models."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        rows = c.models()
    t = table(
        "models",
        ["model", Col("latest", right=True), Col("versions", right=True), Col("aliases", flex=True), "updated (UTC)"],
        (
            [
                m.name,
                m.latest_version,
                m.version_count,
                ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())),
                when(m.updated_at),
            ]
            for m in rows
        ),
    )
    emit(obj.as_json, rows, t)


@app.command()
def versions(ctx: typer.Context, name: str) -> None:
    """List the versions of a model."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        detail = c.model(name)
    # sha256, task and the rest: `modelbay show NAME@VERSION` or --json
    t = table(
        name,
        [
            Col("ver", right=True),
            "created (UTC)",
            Col("size", right=True),
            "precision",
            "aliases",
            Col("description", flex=True),
        ],
        (
            [
                m.version,
                when(m.created_at),
                size(m.size),
                precision(m.quantization),
                detail.aliases_of(m.version),
                m.description,
            ]
            for m in detail.versions
        ),
    )
    emit(obj.as_json, detail, t)


@app.command("show")
def show_manifest(ctx: typer.Context, ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME:ALIAS")) -> None:
    """Show one version's manifest: the one the server serves for REF (a bare NAME: 'production', else the latest)."""
    obj = ctx_obj(ctx)
    name, r = parse_ref(ref)
    with obj.client() as c:
        found = c.resolve(name, r)
    if not obj.as_json:
        via = f" (alias {found.alias})" if found.alias else (" (latest; no 'production' alias)" if r is None else "")
        note(f"{escape(name)} → version {found.version}{escape(via)}")
    emit(True, found.manifest)


@app.command()
def delete(
    ctx: typer.Context, name: str, version: int, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")
) -> None:
    """Delete a version that no alias points at."""
    obj = ctx_obj(ctx)
    if not yes and not obj.as_json:
        typer.confirm(f"Delete {name} version {version}?", abort=True)
    with obj.client() as c:
        res = c.delete_version(name, version)
    emit(obj.as_json, res, f"[green]deleted[/] {escape(name)} version {version}")


def alias_line(s: AliasState) -> str:
    """'iris:production → 2  (was 1, set by 3979e180a1b2)'; '-' where there is nothing."""
    last = s.last_change
    was = f"was {show(last['from'])}, {last['action']} by {show(last['by'])}" if last else "no history"
    return f"[bold]{escape(s.model)}:{escape(s.alias)}[/] → [bold]{show(s.version)}[/]  ({escape(was)})"


def change_detail(e: AliasChange) -> str:
    """A canary change's split and reason: 'canary 4 at 10%', 'guard rail breached: ...'."""
    parts = []
    if c := e.get("canary"):
        parts.append(f"canary {c['version']} at {c['percent']:g}%")
    if reason := e.get("reason"):
        parts.append(reason)
    return "; ".join(parts)


@alias_app.command("set")
def alias_set(
    ctx: typer.Context,
    name: str,
    alias: str,
    version: int,
    expect: int | None = typer.Option(None, help="Only if the alias points at this version now."),
) -> None:
    """Point ALIAS of NAME at VERSION."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        s = c.set_alias(name, alias, version, **({"expected_version": expect} if expect is not None else {}))
    emit(obj.as_json, s, alias_line(s))


@alias_app.command("delete")
def alias_delete(ctx: typer.Context, name: str, alias: str) -> None:
    """Remove an alias (its history is kept)."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        s = c.delete_alias(name, alias)
    emit(obj.as_json, s, f"[green]removed[/] {escape(name)}:{escape(alias)}")


@alias_app.command("list")
def alias_list(ctx: typer.Context, name: str) -> None:
    """The aliases of a model."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        aliases = c.aliases(name)
    emit(obj.as_json, aliases, table(name, ["alias", Col("version", right=True)], sorted(aliases.items())))


@alias_app.command("history")
def alias_history(ctx: typer.Context, name: str, alias: str) -> None:
    """Every change of an alias: who, when, from, to."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        s = c.alias_history(name, alias)
    t = table(
        f"{name}:{alias}",
        ["when (UTC)", "action", Col("from", right=True), Col("to", right=True), "by", Col("detail", flex=True)],
        ([when(e["at"], seconds=True), e["action"], e["from"], e["to"], e["by"], change_detail(e)] for e in s.history),
    )
    emit(obj.as_json, s, t)


@app.command()
def rollback(ctx: typer.Context, name: str, alias: str = typer.Argument("production")) -> None:
    """Undo the latest change of an alias (repeat to walk further back)."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        s = c.rollback(name, alias)
    emit(obj.as_json, s, alias_line(s))
