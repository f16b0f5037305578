"""Shadow traffic: a sampled share of an alias's requests also runs on another version, after the caller
has its answer; the shadow's answer is compared with the primary's and discarded.

The request's thread only draws the sample and queues the work: a single worker thread runs the
shadow, so it never holds up the caller and one shadow at a time competes for the CPU. A full queue
drops the shadow run (counted). A shadow's failure is counted, never raised.

Agreement, per instance: the same top label for classifiers (``{"label": ...}`` answers, or the argmax
of a probability/logit vector), cosine >= ``COSINE_AGREES`` for embeddings, and the largest absolute
difference of raw outputs.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .schemas import ShadowFigures

log = logging.getLogger("modelbay.shadow")
COSINE_AGREES = 0.99


@dataclass
class Comparison:
    agree: bool
    cosine: float | None = None
    max_abs_diff: float | None = None


def _label(p: Any) -> Any:
    if isinstance(p, dict) and "label" in p:
        return p["label"]
    if isinstance(p, list) and p and isinstance(p[0], dict) and "label" in p[0]:
        return p[0]["label"]  # top-k answers, best first
    return None


def compare(primary: Any, shadow: Any) -> Comparison:
    """One instance's answers side by side."""
    a, b = _label(primary), _label(shadow)
    if a is not None or b is not None:
        return Comparison(agree=a == b)
    try:
        x, y = np.asarray(primary, dtype=np.float64).ravel(), np.asarray(shadow, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return Comparison(agree=primary == shadow)
    if x.shape != y.shape or x.size == 0:
        return Comparison(agree=False)
    diff = float(np.max(np.abs(x - y)))
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    cosine = float(x @ y / norm) if norm else None
    if x.size > 1 and np.all(x >= 0) and abs(float(x.sum()) - 1) < 1e-3:  # probabilities: the top class
        return Comparison(agree=int(np.argmax(x)) == int(np.argmax(y)), cosine=cosine, max_abs_diff=diff)
    agree = cosine >= COSINE_AGREES if cosine is not None else diff == 0
    return Comparison(agree=agree, cosine=cosine, max_abs_diff=diff)


@dataclass
class _Tally:
    version: int | None = None
    rate: float | None = None
    runs: int = 0
    errors: int = 0
    dropped: int = 0
    compared: int = 0
    agreed: int = 0
    cosines: list[float] = field(default_factory=list)
    max_abs_diff: float | None = None
    primary_ms: float = 0.0
    shadow_ms: float = 0.0

    def figures(self, model: str, alias: str) -> ShadowFigures:
        return ShadowFigures(
            model=model,
            alias=alias,
            version=self.version,
            rate=self.rate,
            runs=self.runs,
            errors=self.errors,
            dropped=self.dropped,
            compared=self.compared,
            agreement=self.agreed / self.compared if self.compared else None,
            mean_cosine=float(np.mean(self.cosines)) if self.cosines else None,
            max_abs_diff=self.max_abs_diff,
            primary_mean_ms=self.primary_ms / self.runs if self.runs else None,
            shadow_mean_ms=self.shadow_ms / self.runs if self.runs else None,
        )


Job = Callable[[], Any]
MAX_COSINES = 10_000


class ShadowRunner:
    def __init__(self, queue_size: int = 100, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._queue: queue.Queue[tuple[tuple[str, str, str], int, float, list[Any], Job] | None] = queue.Queue(
            queue_size
        )
        self._tallies: dict[tuple[str, str, str], _Tally] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def sampled(self, rate: float) -> bool:
        return self.rng.random() < rate

    def submit(
        self,
        tenant: str,
        model: str,
        alias: str,
        version: int,
        rate: float,
        primary_ms: float,
        answers: list[Any],
        job: Job,
    ) -> None:
        """Queue one shadow run: ``job`` returns the shadow's answers, one per instance, like ``answers``."""
        key = (tenant, model, alias)
        with self._lock:
            tally = self._tallies.setdefault(key, _Tally())
            if tally.version != version:  # a new shadow: new figures
                tally = self._tallies[key] = _Tally(version=version)
            tally.rate = rate
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, daemon=True, name="modelbay-shadow")
                self._thread.start()
        try:
            self._queue.put_nowait((key, version, primary_ms, answers, job))
        except queue.Full:
            with self._lock:
                tally.dropped += 1

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is not None:
                    self._run(*item)
            finally:
                self._queue.task_done()

    def _run(self, key: tuple[str, str, str], version: int, primary_ms: float, answers: list[Any], job: Job) -> None:
        t0 = time.perf_counter()
        try:
            theirs = job()
            error = False
        except Exception as e:  # a shadow's failure is a figure, never the caller's problem
            log.info("shadow v%d of %s failed: %s", version, key, e)
            theirs, error = None, True
        ms = (time.perf_counter() - t0) * 1000
        results = [] if theirs is None else [compare(a, b) for a, b in zip(answers, theirs, strict=False)]
        with self._lock:
            t = self._tallies.get(key)
            if t is None or t.version != version:
                return
            t.runs += 1
            t.errors += error
            t.primary_ms += primary_ms
            t.shadow_ms += ms
            for r in results:
                t.compared += 1
                t.agreed += r.agree
                if r.cosine is not None and len(t.cosines) < MAX_COSINES:
                    t.cosines.append(r.cosine)
                if r.max_abs_diff is not None:
                    t.max_abs_diff = max(t.max_abs_diff or 0.0, r.max_abs_diff)

    def drain(self) -> None:
        """Wait until every queued shadow run is done (tests, shutdown)."""
        self._queue.join()

    def figures(self, tenant: str, model: str, alias: str) -> ShadowFigures:
        with self._lock:
            t = self._tallies.get((tenant, model, alias))
            return t.figures(model, alias) if t else ShadowFigures(model=model, alias=alias)
