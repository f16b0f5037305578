"""The shapes metrics are read back in, shared by every back end, the API and the TUI."""

from __future__ import annotations

import math
import re
import time

from pydantic import BaseModel, Field

from ..errors import BadRequest

WINDOWS = {"5m": 300, "15m": 900, "1h": 3600, "3h": 3 * 3600, "6h": 6 * 3600, "12h": 12 * 3600, "24h": 86400}
_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_POINTS = 1440


def clock() -> float:
    """Now, for windows: one place to read (and, in snapshot tests, to freeze) the time."""
    return time.time()


def parse_duration(text: str, what: str = "window") -> int:
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise BadRequest(f"{what} {text!r}: expected a duration such as 15m, 1h or 24h", field=what)
    seconds = int(m.group(1)) * _UNIT[m.group(2)]
    if seconds <= 0:
        raise BadRequest(f"{what} must be positive", field=what)
    return seconds


def plan(
    window: str, step: str | None = None, now: float | None = None, max_window: int = 86400
) -> tuple[float, float, int]:
    """A window such as '1h' -> (start, end, step) aligned to whole minutes.

    The default step keeps a chart at <= 60 points; steps are whole minutes because
    that is the resolution every back end keeps.
    """
    span = parse_duration(window, "window")
    if span > max_window:
        raise BadRequest(f"window {window!r} exceeds the {max_window // 3600} h that metrics keep", field="window")
    if step is None:
        step_s = max(60, math.ceil(span / 60 / 60) * 60)
    else:
        step_s = parse_duration(step, "step")
        if step_s % 60:
            raise BadRequest("step must be a whole number of minutes", field="step")
    if span / step_s > MAX_POINTS:
        raise BadRequest(f"window/step gives more than {MAX_POINTS} points", field="step")
    now = clock() if now is None else now
    end = (math.floor(now / 60) + 1) * 60  # include the current, partial minute
    start = end - math.ceil(span / step_s) * step_s
    return float(start), float(end), step_s


class Totals(BaseModel):
    """One window summed up."""

    requests: int = 0
    instances: int = 0
    errors: int = 0
    errors_by_type: dict[str, int] = {}
    error_rate: float | None = None
    rate_per_s: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: dict[str, float | None] = Field(default_factory=dict, description="total and per phase")
    cold_starts: int = 0
    load_ms: float | None = None
    feedback: int = 0
    accuracy: float | None = None
    score: float | None = None


class ModelTotals(BaseModel):
    requests: int = 0
    errors: int = 0
    error_rate: float | None = None
    rate_per_s: float = 0.0
    p95_ms: float | None = None


class Series(BaseModel):
    """Aligned per-step lists; ``timestamps[i]`` is the start of step ``i`` (epoch seconds)."""

    model: str
    version: int | None = None
    start: float
    end: float
    step: int
    timestamps: list[float]
    requests: list[int]
    instances: list[int]
    rate_per_s: list[float]
    errors: dict[str, list[int]] = Field(description="per error type")
    error_rate: list[float | None]
    p50_ms: list[float | None]
    p95_ms: list[float | None]
    p99_ms: list[float | None]
    mean_ms: dict[str, list[float | None]] = Field(description="total and per phase")
    cold_starts: list[int]
    load_ms: list[float | None]
    feedback: list[int]
    accuracy: list[float | None]
    score: list[float | None]
    totals: Totals
    warnings: list[str] = []


def empty_series(model: str, version: int | None, start: float, end: float, step: int) -> Series:
    from . import ERROR_TYPES, PHASES

    n = max(0, int((end - start) // step))
    z = [0] * n
    none = [None] * n
    return Series(
        model=model,
        version=version,
        start=start,
        end=end,
        step=step,
        timestamps=[start + i * step for i in range(n)],
        requests=list(z),
        instances=list(z),
        rate_per_s=[0.0] * n,
        errors={t: list(z) for t in ERROR_TYPES},
        error_rate=list(none),
        p50_ms=list(none),
        p95_ms=list(none),
        p99_ms=list(none),
        mean_ms={p: list(none) for p in ("total", *PHASES)},
        cold_starts=list(z),
        load_ms=list(none),
        feedback=list(z),
        accuracy=list(none),
        score=list(none),
        totals=Totals(),
    )


def settle_rates(s: Series, now: float) -> Series:
    """The last step is usually still running: its rate is over the seconds elapsed, not the whole step."""
    if s.timestamps:
        elapsed = now - s.timestamps[-1]
        if 0 < elapsed < s.step:
            s.rate_per_s[-1] = s.requests[-1] / max(elapsed, 1.0)
    span = min(now, s.end) - s.start
    if span > 0:
        s.totals.rate_per_s = s.totals.requests / span
    return s


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None
