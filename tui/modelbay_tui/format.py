"""Short, fixed-width renderings of registry and metrics values for tables.

Units (sizes, shares, times, precisions) are modelbay.units', in their compact forms.
"""

from __future__ import annotations

from typing import Any

from modelbay import units
from modelbay.manifest import Dim
from modelbay.units import ms, precision, truncate
from modelbay.units import percent as pct

__all__ = ["gate", "ms", "pct", "precision", "rate", "shape", "size", "version", "when"]


def size(n: int | None) -> str:
    return units.size(n, compact=True)


def when(iso: str | None) -> str:
    """'2026-11-22T16:20:31.123Z' -> '11-22 16:20' (UTC)."""
    return units.when(iso, year=False)


def version(v: int | None) -> str:
    """'v3', or 'unset' for an alias that points nowhere."""
    return "unset" if v is None else f"v{v}"


def shape(dims: list[Dim]) -> str:
    """[batch,4] rather than a Python list's repr; '?' for an unknown dimension."""
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def gate(metrics: dict[str, Any] | None, width: int = 16) -> str:
    """The accuracy gate's headline: verdict and the gated metric fp32 → int8."""
    g = (metrics or {}).get("gate")
    if not isinstance(g, dict):
        return "-"
    mark = "✓" if g.get("passed") else "✗"
    metric = g.get("metric")
    f, q = (g.get("fp32") or {}).get(metric), (g.get("int8") or {}).get(metric)
    if isinstance(f, (int, float)) and isinstance(q, (int, float)):

        def short(v: float) -> str:
            return f"{v:.3f}".removeprefix("0") if abs(v) < 1 else f"{v:.3g}"

        text = f"{mark} {str(metric)[:3]} {short(f)}→{short(q)}"
    else:
        text = mark
    return truncate(text, width)


def rate(requests: int, seconds: float) -> str:
    if not requests:
        return "0"
    per_min = requests / seconds * 60
    return f"{per_min:.1f}/m" if per_min < 100 else f"{per_min / 60:.1f}/s"
