"""``modelbay keys|tenants|audit``: admin commands, thin over the client."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

keys_app = typer.Typer(help="API keys: create, list, revoke (needs an admin key).", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants (needs a root admin key).", no_args_is_help=True)


def _cli():
    from .. import cli  # the shared console/emit helpers; imported late to avoid a cycle

    return cli


def _key_row(k: dict) -> list[str]:
    cli = _cli()
    state = "active" if k["active"] else ("revoked" if k.get("revoked_at") else "expired")
    return [k["key_id"], k["tenant"], ",".join(k["scopes"]) + (" +root" if k["root"] else ""), k["name"] or "-",
            state, cli._when(k["created_at"]), cli._when(k.get("expires_at"))]


@keys_app.command("create")
def create(ctx: typer.Context,
           scope: list[str] = typer.Option(["invoke"], "--scope", "-s", help="invoke, manage or admin; repeatable."),
           tenant: Optional[str] = typer.Option(None, "--tenant", "-t", help="Default: your key's tenant."),
           name: str = typer.Option("", "--name", "-n", help="What the key is for."),
           root: bool = typer.Option(False, "--root", help="Operator key: manages tenants and all keys."),
           expires_days: Optional[float] = typer.Option(None, "--expires-days", help="Expire after N days.")):
    """Create a key and print its secret (shown once)."""
    cli = _cli()
    with ctx.obj.client() as c:
        k = c.create_key(scope, tenant=tenant, name=name, root=root, expires_in_days=expires_days)
    if ctx.obj.as_json:
        cli._emit(ctx, k)
        return
    cli.out.print(f"[green]created[/] key [bold]{k['key_id']}[/] for tenant [bold]{k['tenant']}[/] "
                  f"scopes {', '.join(k['scopes'])}")
    cli.err.print("the secret is shown once; store it now:")
    cli.out.print(k["key"], soft_wrap=True, highlight=False)


@keys_app.command("list")
def list_(ctx: typer.Context, tenant: Optional[str] = typer.Option(None, "--tenant", "-t"),
          all_tenants: bool = typer.Option(False, "--all", help="Every tenant (root keys).")):
    """List keys (never their secrets)."""
    with ctx.obj.client() as c:
        rows = c.keys(tenant, all_tenants)
    t = Table("key id", "tenant", "scopes", "name", "state", "created (UTC)", "expires (UTC)", title="keys")
    for k in rows:
        t.add_row(*_key_row(k))
    _cli()._emit(ctx, rows, t)


@keys_app.command("revoke")
def revoke(ctx: typer.Context, key_id: str = typer.Argument(..., help="The key id (second part of mb_<id>_...).")):
    """Revoke a key: it stops working within the key cache time (30 s on warm Lambdas)."""
    with ctx.obj.client() as c:
        k = c.revoke_key(key_id)
    cli = _cli()
    if ctx.obj.as_json:
        cli._emit(ctx, k)
    else:
        cli.out.print(f"[yellow]revoked[/] key [bold]{k['key_id']}[/] of tenant {k['tenant']}")


@keys_app.command("whoami")
def whoami(ctx: typer.Context):
    """The tenant and scopes of the key in use."""
    with ctx.obj.client() as c:
        w = c.whoami()
    cli = _cli()
    cli._emit(ctx, w, None if ctx.obj.as_json else
              f"key [bold]{w['key_id']}[/]  tenant [bold]{w['tenant']}[/]  scopes {', '.join(w['scopes'])}"
              + ("  [magenta]root[/]" if w["root"] else ""))


@keys_app.command("bootstrap")
def bootstrap(store: str = typer.Option(..., "--store", envvar="MODELBAY_STORE",
                                        help="The store directory (or s3://bucket/prefix) of the server."),
              url: str = typer.Option("http://127.0.0.1:8080", "--for-url", help="Save the key for this server."),
              tenant: str = typer.Option("default", "--tenant")):
    """Recovery: mint a root admin key straight in the store (needs write access to it, not a key)."""
    from ..storage import open_store
    from .local import mint_admin

    b = mint_admin(open_store(store), tenant, [url], name="bootstrap (cli)")
    _cli().err.print(f"[green]created[/] root admin key {b.key_id}; saved for {url} in {b.saved_to}")


@tenants_app.command("create")
def tenant_create(ctx: typer.Context, name: str, description: str = typer.Option("", "--description", "-d")):
    """Create a tenant; then mint its first admin key with `modelbay keys create --tenant NAME -s admin`."""
    with ctx.obj.client() as c:
        t = c.create_tenant(name, description)
    cli = _cli()
    cli._emit(ctx, t, None if ctx.obj.as_json else f"[green]created[/] tenant [bold]{t['name']}[/]")


@tenants_app.command("list")
def tenant_list(ctx: typer.Context):
    """List tenants."""
    with ctx.obj.client() as c:
        rows = c.tenants()
    t = Table("tenant", "description", "created (UTC)", "by", title="tenants")
    cli = _cli()
    for r in rows:
        t.add_row(r["name"], r["description"] or "-", cli._when(r["created_at"] or None), r["created_by"] or "-")
    cli._emit(ctx, rows, t)


def audit(ctx: typer.Context, tenant: Optional[str] = typer.Option(None, "--tenant", "-t"),
          action: Optional[str] = typer.Option(None, "--action", help="Prefix, e.g. key. or alias."),
          limit: int = typer.Option(50, "--limit", "-n")):
    """Audit records (key, tenant, alias and version changes), newest first."""
    with ctx.obj.client() as c:
        rows = c.audit(tenant, action, limit)
    t = Table("at (UTC)", "tenant", "actor", "action", "target", "details", title="audit")
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in ("at", "tenant", "actor", "action", "target")}
        t.add_row(r["at"].replace("T", " ")[:23], r["tenant"], r["actor"] or "-", r["action"], r["target"],
                  ", ".join(f"{k}={v}" for k, v in extra.items()))
    _cli()._emit(ctx, rows, t)
