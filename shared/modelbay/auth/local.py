"""First start of a local server: mint a root admin key and save it for this user's CLI and TUI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..storage import ObjectStore
from . import credentials
from .audit import AuditLog
from .keys import KeyStore
from .principal import SCOPES


@dataclass
class Bootstrap:
    created: bool
    key_id: str | None = None
    saved_to: Path | None = None
    have_credentials: bool = False


def mint_admin(store: ObjectStore, tenant: str, urls: list[str], *, name: str = "local admin") -> Bootstrap:
    rec, plaintext = KeyStore(store).create(tenant, SCOPES, name=name, root=True, actor="modelbay serve")
    AuditLog(store).record(tenant, "modelbay serve", "key.create", rec.key_id, scopes=rec.scopes, root=True, name=name)
    saved = credentials.save_key(urls, plaintext)
    return Bootstrap(True, rec.key_id, saved, True)


def ensure_local_admin(store: ObjectStore, tenant: str, urls: list[str]) -> Bootstrap:
    """On a store without any key, create a root admin key; otherwise leave keys alone."""
    if KeyStore(store).any():
        return Bootstrap(False, have_credentials=any(credentials.load_key(u) for u in urls))
    return mint_admin(store, tenant, urls)
