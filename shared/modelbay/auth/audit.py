"""Audit records: who changed which key, tenant, alias or version, and when.

One immutable object per event, ``system/audit/<tenant>/<day>/<ms>-<rand>.json``:
appends never contend, and a tenant's records list in time order under one prefix.
Alias files keep their own history too; this log spans everything a tenant did.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from ..layout import check_name
from ..registry import Registry
from ..storage import ObjectStore

log = logging.getLogger("modelbay.audit")
PREFIX = "system/audit/"


class AuditLog:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def record(self, tenant: str, actor: str | None, action: str, target: str, **details: Any) -> dict:
        t = time.time()
        day = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
        entry = {
            "at": datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds"),
            "tenant": tenant,
            "actor": actor,
            "action": action,
            "target": target,
            **details,
        }
        key = f"{PREFIX}{check_name(tenant, 'tenant')}/{day}/{int(t * 1000):014d}-{secrets.token_hex(4)}.json"
        try:
            self.store.put_bytes(key, json.dumps(entry, sort_keys=True, default=str).encode(), if_none_match=True)
        except Exception:  # the change already happened; losing its record must not turn it into a 500
            log.exception("could not write audit record %s", entry)
        return entry

    def list(self, tenant: str, *, limit: int = 100, action: str | None = None) -> list[dict]:
        """Newest first."""
        keys = [i.key for i in self.store.list(f"{PREFIX}{check_name(tenant, 'tenant')}/")]
        out: list[dict] = []
        for key in reversed(keys):
            try:
                entry = json.loads(self.store.get_bytes(key)[0])
            except Exception:  # purged meanwhile, or not a record: one bad object must not hide the rest
                log.warning("unreadable audit record %s skipped", key, exc_info=True)
                continue
            if action and not entry.get("action", "").startswith(action):
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out


class AuditedRegistry(Registry):
    """A tenant's registry that writes an audit record for every change it makes."""

    def __init__(self, *args, audit: AuditLog, **kw) -> None:
        super().__init__(*args, **kw)
        self.audit = audit

    def _changed(self, state, entry):
        extra = {k: entry[k] for k in ("canary", "reason") if k in entry}  # type: ignore[literal-required]
        self.audit.record(
            self.tenant,
            entry["by"],
            f"alias.{entry['action']}",
            f"{state.model}:{state.alias}",
            version=entry["to"],
            previous=entry["from"],
            **extra,
        )

    def delete_version(self, name, version, *, actor=None):
        super().delete_version(name, version, actor=actor)
        self.audit.record(self.tenant, actor, "version.delete", f"{name}@{version}")

    def register_upload(self, name, upload_id, *args, actor=None, **kw):
        m = super().register_upload(name, upload_id, *args, actor=actor, **kw)
        self.audit.record(self.tenant, actor, "version.register", f"{name}@{m.version}", sha256=m.sha256)
        return m

    def register_version(self, name, *args, actor=None, **kw):
        m = super().register_version(name, *args, actor=actor, **kw)
        self.audit.record(self.tenant, actor, "version.register", f"{name}@{m.version}", sha256=m.sha256)
        return m
