"""Name + version/alias -> manifest, with caches sized to what can change.

A version's manifest never changes once visible, so it is cached for the life
of the process; whether the version still exists (it may be deleted) is
re-checked at most once per ``alias_ttl``. Aliases move: what an alias (or the default ref) points at is
re-read after ``alias_ttl`` seconds, so a promotion or rollback takes effect
within a few seconds without a store read on every request. A change made in
this process (the local server: registry routes and engine share one process
and one store) is heard at once (``modelbay.changes``): what it made stale is
dropped before the change is acknowledged.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

from .. import changes
from ..errors import NotFound
from ..layout import MANIFEST, TOMBSTONE
from ..manifest import Manifest
from ..registry import Registry
from ..routing import to_canary
from ..schemas import Canary, Shadow
from ..settings import Limits
from ..storage import ObjectStore

MAX_MANIFESTS = 4096
Route = Literal["stable", "canary"]


class Resolver:
    def __init__(
        self,
        store: ObjectStore,
        limits: Limits,
        alias_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.limits = limits
        self.alias_ttl = alias_ttl
        self.clock = clock
        self._manifests: OrderedDict[tuple[str, str, int], Manifest] = OrderedDict()
        # (tenant, name, ref) -> (stable version, canary, the alias followed, shadow, expiry)
        self._refs: dict[tuple[str, str, str | None], tuple[int, Canary | None, str | None, Shadow | None, float]] = {}
        self.rng = rng or random.Random()
        self._registries: dict[str, Registry] = {}
        # bumped by every change heard for (tenant, model): an answer read before it is not cached
        self._generations: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        changes.watch(store, self._changed)

    def _changed(self, tenant: str, name: str) -> None:
        with self._lock:
            self._generations[(tenant, name)] = self._generations.get((tenant, name), 0) + 1
            for key in [k for k in self._refs if k[:2] == (tenant, name)]:
                self._refs.pop(key, None)

    def registry(self, tenant: str) -> Registry:
        reg = self._registries.get(tenant)
        if reg is None:
            reg = self._registries[tenant] = Registry(self.store, tenant=tenant, limits=self.limits)
        return reg

    def resolve(self, tenant: str, name: str, ref: str | int | None = None) -> Manifest:
        """``ref``: a version number, an alias, or None; ``Registry.locate`` decides what it names.

        An alias with a canary names its stable version here (metadata, status); ``route`` splits.
        """
        version = self._locate(tenant, name, ref)[0]
        return self.manifest(tenant, name, version)

    def shadow(self, tenant: str, name: str, ref: str | int | None = None) -> tuple[str, Shadow] | None:
        """The alias a reference follows and its shadow, if it has one (an explicit version has none)."""
        _, _, alias, shadow = self._locate(tenant, name, ref)
        return (alias, shadow) if alias is not None and shadow is not None else None

    def route(
        self, tenant: str, name: str, ref: str | int | None = None, route_key: str | None = None
    ) -> tuple[Manifest, Route | None]:
        """The version that serves one request: ``resolve``, then the alias's split (``modelbay.routing``).

        Returns the manifest and which side of a split it is (None: the alias has no canary).
        """
        version, canary, alias, _ = self._locate(tenant, name, ref)
        if canary is None or alias is None:
            return self.manifest(tenant, name, version), None
        if to_canary(name, alias, canary.percent, route_key, self.rng):
            return self.manifest(tenant, name, canary.version), "canary"
        return self.manifest(tenant, name, version), "stable"

    def _locate(
        self, tenant: str, name: str, ref: str | int | None
    ) -> tuple[int, Canary | None, str | None, Shadow | None]:
        key = (tenant, name, None if ref is None or ref == "" else str(ref))
        now = self.clock()
        hit = self._refs.get(key)
        if hit is not None and hit[4] > now:
            return hit[:4]
        generation = self._generations.get((tenant, name), 0)
        found = self.registry(tenant).locate(name, ref)
        if found.alias is None and found.ref is not None:
            self._check_not_deleted(tenant, name, found.version)
        self.manifest(tenant, name, found.version)  # 404 now for a version that is not there
        with self._lock:
            if self._generations.get((tenant, name), 0) == generation:
                self._refs[key] = (found.version, found.canary, found.alias, found.shadow, now + self.alias_ttl)
        return found.version, found.canary, found.alias, found.shadow

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
