"""Every ``session.run`` in flight, each with its deadline: one watchdog thread ends the late ones.

onnxruntime checks ``RunOptions.terminate`` between kernels and in every
iteration of a Loop or Scan, so a run whose trip count came from its input
stops within one kernel of its deadline instead of holding a thread (and the
client's connection, and a server's shutdown) for as long as it likes.
``stop()`` ends every run at once: the server calls it when it is told to exit.

Each run also asks onnxruntime to shrink its arena when it ends, so memory a
large request made the arena take is given back rather than kept for the
life of the process.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

from .errors import Busy

if TYPE_CHECKING:
    import onnxruntime as ort

SHRINK = ("memory.enable_memory_arena_shrinkage", "cpu:0")


class Runs:
    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self._active: dict[int, Any] = {}  # id -> RunOptions
        self._deadlines: list[tuple[float, int]] = []
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._watchdog: threading.Thread | None = None
        self.stopping = False

    def start(self) -> tuple[int, ort.RunOptions]:
        import onnxruntime as ort

        if self.stopping:
            raise Busy("the server is shutting down", status=503, retry_after=5)
        options = ort.RunOptions()
        options.add_run_config_entry(*SHRINK)
        run = next(self._ids)
        with self._cond:
            self._active[run] = options
            if self.timeout_s:
                heapq.heappush(self._deadlines, (time.monotonic() + self.timeout_s, run))
                if self._watchdog is None:
                    self._watchdog = threading.Thread(target=self._watch, name="modelbay-run-deadlines", daemon=True)
                    self._watchdog.start()
                elif self._deadlines[0][1] == run:
                    self._cond.notify()
        return run, options

    def finish(self, run: int) -> None:
        with self._cond:
            self._active.pop(run, None)  # its heap entry is dropped when it comes due

    def stop(self) -> int:
        """Terminate every run in flight and refuse new ones; returns how many were stopped."""
        with self._cond:
            self.stopping = True
            for options in self._active.values():
                options.terminate = True
            return len(self._active)

    def resume(self) -> None:
        """Accept runs again: the same app serves another lifespan after a shutdown (tests, embedding)."""
        with self._cond:
            self.stopping = False

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def _watch(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, run = heapq.heappop(self._deadlines)
                    options = self._active.get(run)
                    if options is not None:
                        options.terminate = True
                self._cond.wait(self._deadlines[0][0] - now if self._deadlines else None)
