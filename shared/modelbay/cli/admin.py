"""``modelbay keys|tenants|audit``: admin commands, thin over the client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ..auth.keys import SCOPES
from ..errors import BadRequest, NotFound
from ..schemas import KeyInfo
from ..settings import Settings
from .base import App, ctx_obj
from .output import Col, day, emit, escape, note, out, show, table, when

if TYPE_CHECKING:
    from ..client import Client

app = App()
keys_app = App(help="API keys: create, list, revoke (needs an admin key).")
tenants_app = App(help="Tenants (needs a root admin key).")
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")


@keys_app.command("create")
def create(
    ctx: typer.Context,
    scope: list[str] = typer.Option(["invoke"], "--scope", "-s", help="invoke, manage or admin; repeatable."),
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Default: your key's tenant."),
    name: str = typer.Option("", "--name", "-n", help="What the key is for."),
    root: bool = typer.Option(False, "--root", help="Operator key: manages tenants and all keys."),
    expires_days: float | None = typer.Option(None, "--expires-days", help="Expire after N days."),
) -> None:
    """Create a key and print its secret (shown once)."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        k = c.create_key(scope, tenant=tenant, name=name, root=root, expires_in_days=expires_days)
    if obj.as_json:
        emit(True, k)
        return
    out().print(
        f"[green]created[/] key [bold]{k.key_id}[/] for tenant [bold]{escape(k.tenant)}[/] "
        f"scopes {escape(show(k.scopes))}" + ("  [magenta]root[/]" if k.root else "")
    )
    note("the secret is shown once; store it now:")
    out().print(k.key, soft_wrap=True, markup=False)


@keys_app.command("list")
def list_(
    ctx: typer.Context,
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    all_tenants: bool = typer.Option(False, "--all", help="Every tenant (root keys)."),
) -> None:
    """List keys (never their secrets)."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        rows = c.keys(tenant, all_tenants)
    t = table(
        "keys",
        ["key id", "tenant", "scopes", "state", "created", Col("name", flex=True)],
        ([k.key_id, k.tenant, _scopes(k), _state(k), day(k.created_at), k.name] for k in rows),
    )
    emit(obj.as_json, rows, t)


def _scopes(k: KeyInfo) -> str:
    scopes = "all" if set(k.scopes) == set(SCOPES) else ",".join(k.scopes)
    return scopes + (" +root" if k.root else "")


def _state(k: KeyInfo) -> str:
    return f"until {day(k.expires_at)}" if k.active and k.expires_at else k.state


KEY_ID_LENGTH = 12  # hex characters of a key id (mb_<id>_<secret>)


def find_key(c: Client, given: str) -> str:
    """A whole key id as is; a unique prefix of one (what a narrow table shows) as the key it starts;
    ``mb_<id>_…`` (a key or its masked form) as its id."""
    from ..client import ApiError

    ref = given.strip()
    if ref.startswith("mb_"):
        ref = ref[3:].split("_", 1)[0]
    ref = ref.rstrip("…").lower()
    if len(ref) >= KEY_ID_LENGTH:
        return ref
    if not ref:
        raise BadRequest("give a key id (or the first characters of one)")
    try:
        rows = c.keys(all_tenants=True)
    except ApiError as e:
        if e.status != 403:
            raise
        rows = c.keys()  # not a root key: its own tenant's keys
    matches = sorted(k.key_id for k in rows if k.key_id.startswith(ref))
    if not matches:
        raise NotFound(f"no key starts with {ref!r} (`modelbay keys list` shows them)")
    if len(matches) > 1:
        raise BadRequest(f"{ref!r} starts {len(matches)} keys ({', '.join(matches)}): give more characters")
    return matches[0]


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., help="The key id (mb_<id>_...), or its first characters if they are unique."),
) -> None:
    """Revoke a key: it stops working within the key cache time (30 s on warm Lambdas)."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        k = c.revoke_key(find_key(c, key_id))
    emit(obj.as_json, k, f"[yellow]revoked[/] key [bold]{k.key_id}[/] of tenant {escape(k.tenant)}")


@keys_app.command("whoami")
def whoami(ctx: typer.Context) -> None:
    """The tenant and scopes of the key in use."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        w = c.whoami()
    emit(
        obj.as_json,
        w,
        f"key [bold]{show(w.key_id)}[/]  tenant [bold]{escape(w.tenant)}[/]  scopes "
        f"{escape(show(w.scopes))}" + ("  [magenta]root[/]" if w.root else ""),
    )


@keys_app.command("bootstrap")
def bootstrap(
    ctx: typer.Context,
    store: str | None = typer.Option(
        None,
        "--store",
        help="The store directory (or s3://bucket/prefix) "
        "of the server [default: MODELBAY_STORE, else the local store].",
    ),
    for_url: str = typer.Option("http://127.0.0.1:8080", "--for-url", help="Save the key for this server."),
    tenant: str = typer.Option("default", "--tenant"),
) -> None:
    """Recovery: mint a root admin key straight in the store (needs write access to it, not a key)."""
    from ..auth.local import mint_admin
    from ..storage import open_store

    settings = Settings.from_env(store_url=store)
    b = mint_admin(open_store(settings.store_url, settings), tenant, [for_url], name="bootstrap (cli)")
    emit(
        ctx_obj(ctx).as_json,
        {"key_id": b.key_id, "saved_to": str(b.saved_to), "url": for_url},
        f"[green]created[/] root admin key {b.key_id}; saved for {escape(for_url)} in {escape(str(b.saved_to))}",
    )


@tenants_app.command("create")
def tenant_create(ctx: typer.Context, name: str, description: str = typer.Option("", "--description", "-d")) -> None:
    """Create a tenant; then mint its first admin key with `modelbay keys create --tenant NAME -s admin`."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        t = c.create_tenant(name, description)
    emit(obj.as_json, t, f"[green]created[/] tenant [bold]{escape(t.name)}[/]")


@tenants_app.command("list")
def tenant_list(ctx: typer.Context) -> None:
    """List tenants."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        rows = c.tenants()
    emit(
        obj.as_json,
        rows,
        table(
            "tenants",
            ["tenant", Col("description", flex=True), "created (UTC)", "by"],
            ([r.name, r.description, when(r.created_at or None), r.created_by] for r in rows),
        ),
    )


@app.command()
def audit(
    ctx: typer.Context,
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    action: str | None = typer.Option(None, "--action", help="Prefix, e.g. key. or alias."),
    limit: int = typer.Option(50, "--limit", "-n"),
) -> None:
    """Audit records (key, tenant, alias and version changes), newest first."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        rows = c.audit(tenant, action, limit)
    many = len({r.tenant for r in rows}) > 1  # a tenant column only when it tells something
    t = table(
        "audit" if many or not rows else f"audit of {rows[0].tenant}",
        ["at (UTC)", *(["tenant"] if many else []), "actor", "action", "target", Col("details", flex=True)],
        ([when(r.at), *([r.tenant] if many else []), r.actor, r.action, r.target, r.details] for r in rows),
    )
    emit(obj.as_json, rows, t)
