"""In-process notices of registry changes, per store.

The registry announces each alias move and version delete after it is written;
caches in the same process that read through the same store object (the local
server's engine: its routes and the registry share one process) drop what the
change made stale at once instead of waiting for their TTL. Other processes
(Lambda containers, other servers) never hear of it and rely on their TTL.
Listeners are held weakly: a cache that is gone is forgotten.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable

from .storage import ObjectStore

log = logging.getLogger("modelbay.changes")
Listener = Callable[[str, str], None]  # (tenant, model name)


class _Feed:
    def __init__(self) -> None:
        self._listeners: list[weakref.WeakMethod[Listener]] = []
        self._lock = threading.Lock()

    def watch(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = [r for r in self._listeners if r() is not None] + [weakref.WeakMethod(listener)]

    def announce(self, tenant: str, name: str) -> None:
        with self._lock:
            listeners = [f for r in self._listeners if (f := r()) is not None]
        for listener in listeners:
            try:
                listener(tenant, name)
            except Exception:  # a cache's trouble must not fail the change, which is already made
                log.exception("change listener failed for %s/%s", tenant, name)


_feeds: weakref.WeakKeyDictionary[ObjectStore, _Feed] = weakref.WeakKeyDictionary()
_feeds_lock = threading.Lock()


def _feed(store: ObjectStore) -> _Feed:
    with _feeds_lock:
        feed = _feeds.get(store)
        if feed is None:
            feed = _feeds[store] = _Feed()
        return feed


def watch(store: ObjectStore, listener: Listener) -> None:
    """Call ``listener(tenant, model)`` (a bound method, held weakly) after each change made through ``store``."""
    _feed(store).watch(listener)


def announce(store: ObjectStore, tenant: str, name: str) -> None:
    """Tell this process's listeners on ``store`` that something of ``tenant``'s model ``name`` changed."""
    _feed(store).announce(tenant, name)
