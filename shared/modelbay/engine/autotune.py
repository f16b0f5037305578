"""Session settings chosen by measuring them on this CPU, once per model and CPU, then remembered.

No fixed setting is right everywhere (issue 17, measured on MiniLM int8): on one
AMD EPYC the ``basic`` level and no spinning cost 2.8 ms at batch 1 and 240 ms at
batch 32 against onnxruntime's defaults, while spinning cost 20% of the 8-client
throughput. So the first load of a version on a CPU times a few candidate
settings on inputs of its signature and keeps the fastest; the choice is recorded
under the model's sha256 and the CPU's signature and reused by every later load.

* Coordinate descent, most effective knob first: optimisation level, then
  spinning, then intra-op threads; each step keeps the incumbent unless a
  candidate beats it by ``MARGIN`` in the median of back-to-back pairs of
  measurements (a shared machine's load must not flip it: measured one after
  the other at a load of 20, the same session's rate varied 2x).
* No candidate starts after the time budget (the one under way finishes); what
  was measured by then wins.
* Int8 stays exact: a candidate whose options come out the same as one already
  measured (``cpu_features.exact_int8`` raises low levels on CPUs whose U8S8
  kernels saturate) is not measured twice; the session built is the one served.
* ``latency`` times one stream of single-instance runs (Lambda: one request per
  sandbox at a time); ``throughput`` times concurrent single-instance runs from
  as many threads as a server overlaps requests (spinning workers then fight).
* Settings fixed by the operator (``MODELBAY_ORT_OPT``/``SPIN``/``THREADS``) are
  not varied.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..cpu_features import CpuFeatures, detect
from .cpus import usable_cpus
from .session import SessionConfig, build_session, session_options

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger("modelbay.engine")
Mode = Literal["latency", "throughput"]
TUNED = ("optimization", "spinning", "intra_op_threads")
MARGIN = 0.03  # a candidate must be this much faster than the incumbent to replace it
PAIRS = 3  # back-to-back candidate/incumbent measurements per candidate
RECORD_VERSION = 1

Feeds = dict[str, Any]
# (session, feeds, mode, seconds) -> runs per second; higher is better
Measure = Callable[[Any, Feeds, str, float], float]
Build = Callable[[SessionConfig], Any]


def cpu_signature(cpu: CpuFeatures | None = None, cpus: int | None = None) -> str:
    """What decides which settings are fastest: architecture, vendor, int8/SIMD features and usable CPUs.

    The model name is left out (the same part runs the same kernels); file-name safe.
    """
    f = cpu or detect()
    flags = [
        name
        for name, on in (
            ("avx2", f.avx2),
            ("avx512", f.avx512),
            ("vnni", f.vnni),
            ("amx", f.amx_int8),
            ("dotprod", f.dotprod),
        )
        if on
    ]
    vendor = "".join(c for c in f.vendor if c.isalnum()) or "unknown"
    return "-".join([f.arch, vendor, *flags, f"{cpus or usable_cpus()}cpu"])


@dataclass(frozen=True)
class Choice:
    """What tuning picked for one model on one CPU, and what it measured (runs per second per candidate)."""

    optimization: str
    spinning: bool
    intra_op_threads: int
    mode: str
    cpu: str
    measured: dict[str, float] = field(default_factory=dict)
    tuning_ms: float = 0.0
    source: str = "tuned"  # "tuned" now, "recorded" when read back

    def apply(self, base: SessionConfig) -> SessionConfig:
        return replace(
            base, optimization=self.optimization, spinning=self.spinning, intra_op_threads=self.intra_op_threads
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def label(config: SessionConfig) -> str:
    return f"{config.optimization}/{'spin' if config.spinning else 'nospin'}/{config.intra_op_threads}t"


# ------------------------------------------------------------------ measuring
def sample_feeds(session: Any, batch: int = 1, seq: int = 16, seed: int = 0) -> Feeds:
    """Inputs from the session's signature: symbolic dims -> ``batch`` (first) or ``seq``.

    Integer inputs get token ids every BERT-style vocabulary has (masks ones, token types zeros).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds: Feeds = {}
    for i in session.get_inputs():
        shape = [batch if k == 0 else (d if isinstance(d, int) and d > 0 else seq) for k, d in enumerate(i.shape)]
        dtype = np.dtype(_NUMPY.get(i.type, "float32"))
        if dtype.kind == "f":
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b" or "mask" in i.name:
            feeds[i.name] = np.ones(shape, dtype)
        elif "type" in i.name:
            feeds[i.name] = np.zeros(shape, dtype)
        else:
            feeds[i.name] = rng.integers(0, 8, shape).astype(dtype)  # ids every vocabulary has
    return feeds


_NUMPY = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def measure(session: Any, feeds: Feeds, mode: str, seconds: float, max_runs: int = 40) -> float:
    """Runs per second of ``session`` on ``feeds`` for about ``seconds`` or ``max_runs`` runs a stream
    (after one warm-up run): a small model is measured in milliseconds, a large one within its slice.

    ``latency``: the inverse of the median run time of one stream. ``throughput``:
    runs completed per second by ``2 x usable CPUs`` threads running at once.
    """
    session.run(None, feeds)
    if mode == "latency":
        times: list[float] = []
        end = time.perf_counter() + seconds
        while (time.perf_counter() < end and len(times) < max_runs) or len(times) < 3:
            t0 = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - t0)
        return 1.0 / max(statistics.median(times), 1e-9)
    counts: list[int] = []
    start = threading.Barrier(2 * usable_cpus() + 1)
    stop = time.perf_counter() + seconds

    def worker() -> None:
        n = 0
        start.wait()
        while n < 2 or (time.perf_counter() < stop and n < max_runs):
            session.run(None, feeds)
            n += 1
        counts.append(n)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(start.parties - 1)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return sum(counts) / max(time.perf_counter() - t0, 1e-9)


# ------------------------------------------------------------------ searching
def candidates(base: SessionConfig, knob: str, cpus: int) -> list[Any]:
    if knob == "optimization":
        return ["all", "extended", "basic"]  # onnxruntime's own default first: it most often wins
    if knob == "spinning":
        return [False, True]
    return sorted({1, max(1, cpus // 2), cpus})


def _effective(config: SessionConfig) -> tuple[Any, ...]:
    """The options onnxruntime would really get (exact_int8 may have raised the level)."""
    return (int(session_options(config).graph_optimization_level), config.spinning, config.intra_op_threads)


def search(
    base: SessionConfig,
    build: Build,
    feeds: Callable[[Any], Feeds],
    *,
    mode: str,
    fixed: Iterable[str] = (),
    budget_s: float = 2.0,
    measure: Measure = measure,
    effective: Callable[[SessionConfig], Any] = _effective,
    clock: Callable[[], float] = time.monotonic,
    cpus: int | None = None,
) -> tuple[SessionConfig, Any, dict[str, float]]:
    """The fastest config found within ``budget_s``, its built session, and every measured score.

    ``feeds`` makes the inputs from the first session built (its signature).
    """
    cpus = cpus or usable_cpus()
    deadline = clock() + budget_s
    # each candidate gets two slices of the budget (itself and the incumbent, in pairs): enough for
    # medians, small enough for ~6 candidates with their session builds
    slice_s = max(0.02, budget_s / 16)
    best = base
    best_session = build(base)
    inputs = feeds(best_session)
    best_score = measure(best_session, inputs, mode, slice_s)
    scores = {label(base): round(best_score, 2)}
    seen = {effective(base)}
    fixed = set(fixed)
    for knob in TUNED:
        if knob in fixed:
            continue
        incumbent = best
        for value in candidates(incumbent, knob, cpus):
            if clock() >= deadline:
                return best, best_session, scores
            config = replace(incumbent, **{knob: value})
            key = effective(config)
            if key in seen:
                continue
            seen.add(key)
            try:
                session = build(config)
                ratio = _paired(measure, session, best_session, inputs, mode, slice_s / PAIRS)
            except Exception as e:  # a candidate onnxruntime refuses is not a candidate
                log.info("tuning: %s failed: %s", label(config), e)
                continue
            score = best_score * ratio
            scores[label(config)] = round(score, 2)
            if ratio > 1 + MARGIN:
                best, best_session, best_score = config, session, score
            del session  # a loser's memory goes now, not at the end of the search
    return best, best_session, scores


def _paired(measure: Measure, candidate: Any, incumbent: Any, inputs: Feeds, mode: str, seconds: float) -> float:
    """Candidate over incumbent: the median ratio of ``PAIRS`` back-to-back measurements of both.

    A burst of load from elsewhere hits both sides of a pair alike, where one measurement
    each would credit it to whichever ran during it.
    """
    ratios = []
    for _ in range(PAIRS):
        c = measure(candidate, inputs, mode, seconds)
        ratios.append(c / max(measure(incumbent, inputs, mode, seconds), 1e-9))
    return statistics.median(ratios)


# ------------------------------------------------------------------ records
class Records:
    """One small JSON file per (model sha256, CPU signature, mode), written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str, cpu: str, mode: str) -> Path:
        safe = "".join(c for c in sha256 if c.isalnum())[:64]
        return self.root / f"{safe}.{cpu}.{mode}.json"

    def get(self, sha256: str, cpu: str, mode: str) -> Choice | None:
        try:
            data = json.loads(self._path(sha256, cpu, mode).read_text())
            if data.pop("version", None) != RECORD_VERSION:
                return None
            choice = Choice(**{**data, "source": "recorded"})
            SessionConfig(optimization=choice.optimization, intra_op_threads=choice.intra_op_threads)  # valid?
            return choice
        except (OSError, ValueError, TypeError):
            return None  # absent, or unreadable: tune again

    def put(self, sha256: str, choice: Choice) -> None:
        path = self._path(sha256, choice.cpu, choice.mode)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"version": RECORD_VERSION, **choice.as_dict()}))
            os.replace(tmp, path)
        except OSError as e:  # a read-only cache costs a re-tune next time, not the load
            log.warning("cannot record the tuned session settings in %s: %s", path, e)


def release_freed_memory() -> None:
    """Give the heap the losing sessions freed back to the OS (glibc keeps it otherwise).

    Measured on MiniLM int8: a server that tuned at start kept ~20 MiB more RSS than one
    that read a record, all of it freed but unreturned session memory.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:  # not glibc (musl, macOS): nothing to trim
        pass


# ------------------------------------------------------------------ the engine's side
@dataclass(frozen=True)
class TuneConfig:
    mode: str = "off"  # "off", "latency" or "throughput"
    budget_s: float = 2.0
    fixed: frozenset[str] = frozenset()  # knobs the operator set

    @classmethod
    def from_settings(cls, settings: Settings) -> TuneConfig:
        fixed = {
            knob
            for knob, value in (
                ("optimization", settings.ort_opt),
                ("spinning", settings.ort_spin),
                ("intra_op_threads", settings.ort_threads),
            )
            if value is not None
        }
        mode = settings.ort_tune
        if mode == "auto":
            # Lambda: tuning would add to every cold start; a local server overlaps requests
            mode = "off" if settings.lambda_function else "throughput"
        return cls(mode=mode, budget_s=settings.ort_tune_budget_ms / 1000, fixed=frozenset(fixed))


class Tuner:
    """Builds sessions with the recorded choice for this CPU, tuning first when there is none."""

    def __init__(
        self,
        config: TuneConfig,
        records: Records,
        *,
        measure: Measure = measure,
        cpu: str | None = None,
        feeds: Callable[[Any], Feeds] = sample_feeds,
    ) -> None:
        self.config = config
        self.records = records
        self.measure = measure
        self._cpu = cpu
        self.feeds = feeds

    @property
    def cpu(self) -> str:
        if self._cpu is None:
            self._cpu = cpu_signature()
        return self._cpu

    def session(
        self, path: Path, sha256: str, base: SessionConfig, scratch: Path | None = None
    ) -> tuple[Any, Choice | None]:
        """A session of ``path`` and the choice it was built with (None: ``base`` as configured)."""
        mode = self.config.mode
        if mode == "off" or self.config.fixed >= set(TUNED):
            return build_session(path, base, scratch), None
        recorded = self.records.get(sha256, self.cpu, mode)
        if recorded is not None:
            return build_session(path, self._keep_fixed(recorded.apply(base), base), scratch), recorded

        def build(config: SessionConfig) -> Any:
            return build_session(path, config, scratch)

        t0 = time.perf_counter()
        try:
            best, session, scores = search(
                base,
                build,
                self.feeds,
                mode=mode,
                fixed=self.config.fixed,
                budget_s=self.config.budget_s,
                measure=self.measure,
            )
        except Exception as e:
            # inputs made from the signature do not suit every graph (fixed sizes, vocabularies,
            # value ranges): such a version is served as configured, and its load never fails for tuning
            log.info("%s: not tuned (%s: %s); served with the configured settings", path.name, type(e).__name__, e)
            return build_session(path, base, scratch), None
        choice = Choice(
            best.optimization,
            best.spinning,
            best.intra_op_threads,
            mode,
            self.cpu,
            scores,
            round((time.perf_counter() - t0) * 1000, 1),
        )
        self.records.put(sha256, choice)
        release_freed_memory()
        log.info("tuned %s on %s (%s): %s, measured %s", path.name, self.cpu, mode, label(best), scores)
        return session, choice

    def _keep_fixed(self, tuned: SessionConfig, base: SessionConfig) -> SessionConfig:
        """A record made before the operator fixed a knob does not override it."""
        return replace(tuned, **{k: getattr(base, k) for k in self.config.fixed})


def describe(choice: Choice | None, config: SessionConfig) -> Mapping[str, Any]:
    """What a loaded version runs with, for ``modelbay show`` and the model's metadata route."""
    return {
        "optimization": config.optimization if choice is None else choice.optimization,
        "spinning": config.spinning if choice is None else choice.spinning,
        "intra_op_threads": config.intra_op_threads if choice is None else choice.intra_op_threads,
        "tuned": None if choice is None else {"mode": choice.mode, "cpu": choice.cpu, "source": choice.source},
    }
