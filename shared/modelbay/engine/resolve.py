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

from ..errors import NotFound
from ..layout import MANIFEST, TOMBSTONE, check_name, check_version
from ..manifest import Manifest
from ..registry import DEFAULT_ALIAS, Registry
from ..settings import Limits
from ..storage import ObjectStore

MAX_MANIFESTS = 4096


class Resolver:
    def __init__(self, store: ObjectStore, limits: Limits, alias_ttl: float = 5.0,
                 clock=time.monotonic) -> None:
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
        """``ref``: a version number, an alias, or None (``production``, else the latest)."""
        if ref == "":
            ref = None
        now = self.clock()
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return self._version(tenant, name, check_version(ref), now)
        key = (tenant, name, ref)
        hit = self._refs.get(key)
        if hit is not None and hit[1] > now:
            return self.manifest(tenant, name, hit[0])
        check_name(name, "model name")
        reg = self.registry(tenant)
        if ref is None:
            try:
                version = reg.alias_version(name, DEFAULT_ALIAS)
            except NotFound:
                versions = reg.version_numbers(name)
                if not versions:
                    raise NotFound(f"no model named {name!r}", model=name) from None
                version = versions[-1]
        else:
            try:
                version = reg.alias_version(name, check_name(ref, "alias"))
            except NotFound:
                if not reg.version_numbers(name):
                    raise NotFound(f"no model named {name!r}", model=name) from None
                raise
        manifest = self.manifest(tenant, name, version)
        self._refs[key] = (version, now + self.alias_ttl)
        return manifest

    def _version(self, tenant: str, name: str, version: int, now: float) -> Manifest:
        """An explicit version: its manifest never changes, but it can be deleted; re-check that per TTL."""
        key = (tenant, name, str(version))
        hit = self._refs.get(key)
        if hit is not None and hit[1] > now:
            return self.manifest(tenant, name, version)
        if (tenant, name, version) in self._manifests:
            reg = self.registry(tenant)
            if self.store.head(reg.layout.file(name, version, TOMBSTONE)) is not None or \
                    self.store.head(reg.layout.file(name, version, MANIFEST)) is None:
                self._manifests.pop((tenant, name, version), None)
                raise NotFound(f"model {name!r} version {version} was deleted", model=name, version=version)
        manifest = self.manifest(tenant, name, version)
        self._refs[key] = (version, now + self.alias_ttl)
        return manifest

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

    def forget(self, tenant: str, name: str) -> None:
        """Drop cached refs of a model (a test or an admin knows the alias just moved)."""
        for key in [k for k in self._refs if k[:2] == (tenant, name)]:
            self._refs.pop(key, None)
