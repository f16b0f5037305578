"""What must hold in a store whatever crashed or failed: checked by walking everything stored.

``violations(store)``: every visible version reads back whole and verified (manifest,
model and side files against their sha256), every alias document parses, points at a
visible version (or nothing) and has a history without duplicate change ids whose
entries chain, and the tenant's listing works. ``leftovers(store)``: what a sweep must
have removed (files of hidden versions, staged uploads, work files, stale records).
Both return readable lines, empty when all is well.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from modelbay.layout import CLAIM, MANIFEST, MODEL_FILE, TOMBSTONE
from modelbay.registry import Registry
from modelbay.storage import ObjectStore


def tenants(store: ObjectStore) -> list[str]:
    return sorted({i.key.split("/")[1] for i in store.list("tenants/") if i.key.count("/") >= 2})


def _layout(store: ObjectStore, tenant: str) -> dict[str, dict[int, set[str]]]:
    """{model: {version: files}} of every version directory, visible or not."""
    prefix = f"tenants/{tenant}/models/"
    out: dict[str, dict[int, set[str]]] = {}
    for info in store.list(prefix):
        parts = info.key[len(prefix) :].split("/")
        if len(parts) == 3 and parts[1].isdigit():
            out.setdefault(parts[0], {}).setdefault(int(parts[1]), set()).add(parts[2])
    return out


def violations(store: ObjectStore) -> list[str]:
    out: list[str] = []
    for tenant in tenants(store):
        reg = Registry(store, tenant)
        visible: dict[str, set[int]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, versions in _layout(store, tenant).items():
                for v, files in versions.items():
                    if MANIFEST not in files or TOMBSTONE in files:
                        continue
                    visible.setdefault(name, set()).add(v)
                    where = f"{tenant}/{name}@{v}"
                    try:
                        m = reg.get_version(name, v)
                        reg.store.get_file(
                            reg.layout.file(name, v, MODEL_FILE), Path(tmp) / "m", expected_sha256=m.sha256
                        )
                        for f, info in m.files.items():
                            reg.store.get_file(
                                reg.layout.file(name, v, f), Path(tmp) / "f", expected_sha256=info.sha256
                            )
                    except Exception as e:
                        out.append(f"visible version {where} does not read back whole: {type(e).__name__}: {e}")
        try:
            reg.list_models()
        except Exception as e:
            out.append(f"tenant {tenant}: listing models fails: {type(e).__name__}: {e}")
        prefix = f"tenants/{tenant}/aliases/"
        for info in store.list(prefix):
            name, _, file = info.key[len(prefix) :].partition("/")
            alias = file.removesuffix(".json")
            where = f"{tenant}/{name}:{alias}"
            try:
                state = reg.alias_state(name, alias)
            except Exception as e:
                out.append(f"alias {where} is unreadable: {type(e).__name__}: {e}")
                continue
            if state.version is not None and state.version not in visible.get(name, set()):
                out.append(f"alias {where} points at version {state.version}, which is not visible")
            ids = Counter(e.get("id") for e in state.history if e.get("id"))
            if dups := [i for i, n in ids.items() if n > 1]:
                out.append(f"alias {where}: {len(dups)} changes recorded twice in its history")
            for a, b in zip(state.history, state.history[1:]):
                if a["to"] != b["from"]:
                    out.append(f"alias {where}: history breaks between {a} and {b}")
            if state.history and state.history[-1]["to"] != state.version:
                out.append(f"alias {where}: points at {state.version} but its last change says {state.history[-1]}")
    return out


def duplicate_history_entries(store: ObjectStore) -> int:
    n = 0
    for tenant in tenants(store):
        reg = Registry(store, tenant)
        prefix = f"tenants/{tenant}/aliases/"
        for info in store.list(prefix):
            name, _, file = info.key[len(prefix) :].partition("/")
            state = reg.alias_state(name, file.removesuffix(".json"))
            ids = Counter(e.get("id") for e in state.history if e.get("id"))
            n += sum(c - 1 for c in ids.values())
    return n


def leftovers(store: ObjectStore) -> list[str]:
    out: list[str] = []
    for tenant in tenants(store):
        for name, versions in _layout(store, tenant).items():
            for v, files in versions.items():
                hidden = MANIFEST not in files or TOMBSTONE in files
                if hidden and (extra := files - {CLAIM, TOMBSTONE}):
                    out.append(f"hidden version {tenant}/{name}@{v} still has {sorted(extra)}")
        out += [f"staged upload left: {i.key}" for i in store.list(f"tenants/{tenant}/uploads/")]
    scratch = getattr(store, "scratch_root", None)
    if scratch is not None and scratch.exists():
        out += [f"work file left: {p.name}" for p in scratch.iterdir()]
    root = getattr(store, "root", None)
    if root is not None:  # the local store's own records and locks
        meta = root / ".sys" / "meta"
        for p in meta.rglob("*"):
            if p.is_file() and not (root / p.relative_to(meta)).exists():
                out.append(f"record without its object: {p.relative_to(meta)}")
        locks = list((root / ".sys" / "locks").iterdir())
        if len(locks) > 256:
            out.append(f"{len(locks)} lock files: their number must stay bounded")
    return out
