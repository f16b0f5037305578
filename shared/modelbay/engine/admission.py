"""How many inferences may be in flight: for the whole server, and for one tenant.

Admission never waits: a request past a bound is answered at once (429 for a
tenant over its share, 503 for a full server, both with Retry-After), so a
tenant that sends slow requests fills its own share and no one else's, and
nothing queues behind a thread that is busy.
"""

from __future__ import annotations

import threading

from .errors import Busy


class Admission:
    def __init__(self, total: int, per_tenant: int) -> None:
        self.total = total
        self.per_tenant = per_tenant
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._count = 0

    def enter(self, tenant: str) -> None:
        """Take a slot for ``tenant`` or raise ``Busy``; every ``enter`` is followed by one ``leave``."""
        with self._lock:
            mine = self._in_flight.get(tenant, 0)
            if mine >= self.per_tenant:
                raise Busy(
                    f"tenant {tenant!r} has {mine} inferences in flight; the limit is {self.per_tenant}",
                    limit=self.per_tenant,
                )
            if self._count >= self.total:
                raise Busy(
                    f"the server has {self._count} inferences in flight; try again shortly",
                    status=503,
                    limit=self.total,
                )
            self._in_flight[tenant] = mine + 1
            self._count += 1

    def leave(self, tenant: str) -> None:
        with self._lock:
            left = self._in_flight.get(tenant, 0) - 1
            if left > 0:
                self._in_flight[tenant] = left
            else:
                self._in_flight.pop(tenant, None)
            self._count -= 1

    @property
    def in_flight(self) -> int:
        return self._count
