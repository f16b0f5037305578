"""Name + version/alias -> manifest, with caches sized to what can change.

A version's manifest never changes once visible, so it is cached for the life
of the process; whether the version still exists (it may be deleted) is
re-checked at most once per ``alias_ttl``. Aliases move: what an alias (or the default ref) points at is
re-read after ``alias_ttl`` seconds, so a promotion or rollback takes effect
within a few seconds without a store read on every request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..errors import NotFound
from ..layout import MANIFEST, TOMBSTONE
from ..manifest import Manifest
from ..registry import Registry
from ..settings import Limits
from ..storage import ObjectStore

MAX_MANIFESTS = 4096


class Resolver:
    def __init__(
        self, store: ObjectStore, limits: Limits, alias_ttl: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.limits = limits
        self.alias_ttl = alias_ttl
        self.clock = clock
        self._manifests: OrderedDict[tuple[str, str, int], Manifest] = OrderedDict()
        self._refs: dict[tuple[str, str, str | None], tuple[int, float]] = {}
        self._registries: dict[str, Registry] = {}
        self._lock = threading.Lock()

    def registry(self, tenant: str) -> Registry:
        reg = self._registries.get(tenant)
        if reg is None:
            reg = self._registries[tenant] = Registry(self.store, tenant=tenant, limits=self.limits)
        return reg

    def resolve(self, tenant: str, name: str, ref: str | int | None = None) -> Manifest:
        """``ref``: a version number, an alias, or None; ``Registry.locate`` decides what it names."""
        key = (tenant, name, None if ref is None or ref == "" else str(ref))
        now = self.clock()
        hit = self._refs.get(key)
        if hit is not None and hit[1] > now:
            return self.manifest(tenant, name, hit[0])
        found = self.registry(tenant).locate(name, ref)
        if found.alias is None and found.ref is not None:
            self._check_not_deleted(tenant, name, found.version)
        manifest = self.manifest(tenant, name, found.version)
        self._refs[key] = (found.version, now + self.alias_ttl)
        return manifest

    def _check_not_deleted(self, tenant: str, name: str, version: int) -> None:
        """An explicit version: its manifest never changes, but it can be deleted; re-checked once per TTL."""
        if (tenant, name, version) in self._manifests:
            reg = self.registry(tenant)
            if (
                self.store.head(reg.layout.file(name, version, TOMBSTONE)) is not None
                or self.store.head(reg.layout.file(name, version, MANIFEST)) is None
            ):
                self._manifests.pop((tenant, name, version), None)
                raise NotFound(f"model {name!r} version {version} was deleted", model=name, version=version)

    def manifest(self, tenant: str, name: str, version: int) -> Manifest:
        key = (tenant, name, version)
        m = self._manifests.get(key)
        if m is not None:
            return m
        m = self.registry(tenant).get_version(name, version)
        with self._lock:
            self._manifests[key] = m
            while len(self._manifests) > MAX_MANIFESTS:
                self._manifests.popitem(last=False)
        return m
