"""The ``modelbay`` command: a local server, and a client of any modelbay server."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import ModelbayError
from .manifest import VersionMetadata

app = typer.Typer(help="modelbay: versioned ONNX models, quantized and served.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
alias_app = typer.Typer(help="Point aliases such as 'production' at versions.", no_args_is_help=True)
app.add_typer(alias_app, name="alias")
from .auth.commands import audit as _audit, keys_app, tenants_app  # noqa: E402

app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
app.command("audit")(_audit)

out = Console()
err = Console(stderr=True)


@dataclass
class Ctx:
    url: str | None
    api_key: str | None
    as_json: bool

    def client(self):
        from .client import Client

        return Client(self.url, self.api_key)


@app.callback()
def _main(ctx: typer.Context,
          url: Optional[str] = typer.Option(None, "--url", envvar="MODELBAY_URL", help="Server URL."),
          api_key: Optional[str] = typer.Option(None, "--api-key", envvar="MODELBAY_API_KEY", help="API key."),
          as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    ctx.obj = Ctx(url, api_key, as_json)


def _emit(ctx: typer.Context, data: Any, table: Table | str | None = None) -> None:
    if ctx.obj.as_json or table is None:
        out.print_json(json.dumps(data, default=str))
    else:
        out.print(table)


def _when(ts: float | str | None) -> str:
    if ts is None:
        return "-"
    if isinstance(ts, (int, float)):
        from datetime import datetime, timezone

        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return ts.replace("T", " ")[:19]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Interface to bind."),
          port: int = typer.Option(8080, help="Port."),
          store: Optional[str] = typer.Option(None, envvar="MODELBAY_STORE",
                                              help="Store: a directory or s3://bucket/prefix "
                                                   "[default: ~/.local/share/modelbay/store]"),
          no_auth: bool = typer.Option(False, "--no-auth", help="Accept every request without a key (unsafe).")):
    """Run the local server (management + inference) on a store."""
    import uvicorn

    from .api.app import create_app
    from .settings import Settings

    settings = Settings.from_env(store_url=store)
    if no_auth:
        settings.auth = False
    api = create_app(settings)
    _announce_auth(api.state.store, settings, host, port)
    _start_sweeper(api.state.store, settings)
    err.print(f"[bold]modelbay[/] serving store [cyan]{settings.store_url}[/] on http://{host}:{port}  "
              f"(API docs: http://{host}:{port}/docs)")
    uvicorn.run(api, host=host, port=port, log_level="warning")


def _announce_auth(store, settings, host: str, port: int) -> None:
    if not settings.auth:
        err.print("[bold red]WARNING: --no-auth: anyone who reaches this port can read, change and delete "
                  "every model.[/]")
        return
    from .auth.credentials import local_urls
    from .auth.local import ensure_local_admin

    b = ensure_local_admin(store, settings.default_tenant, local_urls(host, port))
    if b.created:
        err.print(f"[green]created the admin key {b.key_id}[/] and saved it in {b.saved_to}: "
                  "the modelbay CLI and TUI of this user use it. Other users: `modelbay keys create`.")
    elif not b.have_credentials:
        err.print("[yellow]API keys are required and none is saved for this server: pass --api-key, or mint "
                  "one with `modelbay keys bootstrap --store <store>`.[/]")


def _start_sweeper(store, settings) -> None:
    import threading

    from .registry import sweep_all

    def loop():
        while True:
            try:
                sweep_all(store, settings.limits)
            except Exception as e:  # a failed sweep must not stop the server
                err.print(f"[yellow]sweep failed: {e}[/]")
            stop.wait(600)

    stop = threading.Event()
    threading.Thread(target=loop, daemon=True, name="modelbay-sweep").start()


@app.command()
def models(ctx: typer.Context):
    """List models."""
    with ctx.obj.client() as c:
        rows = c.models()
    t = Table("model", "latest", "versions", "aliases", "updated (UTC)", title="models")
    for m in rows:
        t.add_row(m["name"], str(m["latest_version"]), str(m["version_count"]),
                  ", ".join(f"{a}→{v}" for a, v in sorted(m["aliases"].items())) or "-", _when(m["updated_at"]))
    _emit(ctx, rows, t)


@app.command()
def versions(ctx: typer.Context, name: str):
    """List the versions of a model."""
    with ctx.obj.client() as c:
        detail = c.model(name)
    by_version: dict[int, list[str]] = {}
    for a, v in detail["aliases"].items():
        by_version.setdefault(v, []).append(a)
    t = Table("version", "created (UTC)", "size", "task", "quantization", "sha256", "aliases", "description",
              title=name)
    for m in detail["versions"]:
        q = (m.get("quantization") or {}).get("method", "none")
        t.add_row(str(m["version"]), _when(m["created_at"]), _size(m["size"]), m["task"], q, m["sha256"][:12],
                  ", ".join(sorted(by_version.get(m["version"], []))) or "-", m["description"][:40])
    _emit(ctx, detail, t)


@app.command()
def show(ctx: typer.Context, ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME:ALIAS")):
    """Show one version's manifest."""
    from .refs import parse_ref

    name, r = parse_ref(ref)
    with ctx.obj.client() as c:
        m = c.version(name, r or "production") if r else c.versions(name)[-1]
    _emit(ctx, m.model_dump(mode="json"))


@app.command()
def delete(ctx: typer.Context, name: str, version: int,
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")):
    """Delete a version that no alias points at."""
    if not yes and not ctx.obj.as_json:
        typer.confirm(f"Delete {name} version {version}?", abort=True)
    with ctx.obj.client() as c:
        res = c.delete_version(name, version)
    _emit(ctx, res, f"[green]deleted[/] {name} version {version}")


def _alias_line(s: dict[str, Any]) -> str:
    last = s["history"][-1] if s["history"] else {}
    return (f"[bold]{s['model']}:{s['alias']}[/] → [bold]{s['version']}[/]"
            f"  (was {last.get('from')}, {last.get('action', 'set')} by {last.get('by') or '-'})")


@alias_app.command("set")
def alias_set(ctx: typer.Context, name: str, alias: str, version: int,
              expect: Optional[int] = typer.Option(None, help="Only if the alias points at this version now.")):
    """Point ALIAS of NAME at VERSION."""
    with ctx.obj.client() as c:
        s = c.set_alias(name, alias, version, **({"expected_version": expect} if expect is not None else {}))
    _emit(ctx, s, _alias_line(s))


@alias_app.command("delete")
def alias_delete(ctx: typer.Context, name: str, alias: str):
    """Remove an alias (its history is kept)."""
    with ctx.obj.client() as c:
        s = c.delete_alias(name, alias)
    _emit(ctx, s, f"[green]removed[/] {name}:{alias}")


@alias_app.command("list")
def alias_list(ctx: typer.Context, name: str):
    """The aliases of a model."""
    with ctx.obj.client() as c:
        a = c.aliases(name)
    t = Table("alias", "version", title=name)
    for k, v in sorted(a.items()):
        t.add_row(k, str(v))
    _emit(ctx, a, t)


@alias_app.command("history")
def alias_history(ctx: typer.Context, name: str, alias: str):
    """Every change of an alias: who, when, from, to."""
    with ctx.obj.client() as c:
        s = c.alias_history(name, alias)
    t = Table("when (UTC)", "action", "from", "to", "by", title=f"{name}:{alias}")
    for e in s["history"]:
        t.add_row(_when(e["at"]), e["action"], str(e["from"] if e["from"] is not None else "-"),
                  str(e["to"] if e["to"] is not None else "-"), e.get("by") or "-")
    _emit(ctx, s, t)


@app.command()
def rollback(ctx: typer.Context, name: str, alias: str = typer.Argument("production")):
    """Undo the latest change of an alias (repeat to walk further back)."""
    with ctx.obj.client() as c:
        s = c.rollback(name, alias)
    _emit(ctx, s, _alias_line(s))


from .metrics.commands import register as _register_metrics  # noqa: E402

_register_metrics(app)
app.command("predict")(__import__("modelbay.cli_predict", fromlist=["predict"]).predict)
app.command("push")(__import__("modelbay.cli_push", fromlist=["push"]).push)
__import__("modelbay.convert.cli", fromlist=["register"]).register(app)


@app.command("seed-demo")
def seed_demo(ctx: typer.Context,
              cache_dir: Optional[Path] = typer.Option(None, help="Example build cache [~/.cache/modelbay/examples]."),
              only: list[str] = typer.Option([], "--only", help="Seed just these demo models.")):
    """Build the example models (cached) and push them with the 'production' alias."""
    from .demo import seed

    with ctx.obj.client() as c:
        result = seed(c, cache_dir, names=only or None, say=lambda m: err.print(f"[dim]..[/] {m}"))
    t = Table("model", "result", title="demo models")
    for k, v in result.items():
        t.add_row(k, v)
    _emit(ctx, result, t)


def main() -> None:
    try:
        app()
    except ModelbayError as e:
        err.print(f"[red]error[/] ({e.status} {e.code}): {e.message}")
        if isinstance(e.details.get("gate"), dict):  # a refusal shows the gate's numbers
            from .convert.cli import gate_table

            err.print(gate_table(e.details["gate"]))
        sys.exit(1)


if __name__ == "__main__":
    main()
