"""Short, fixed-width renderings of registry and metrics values for tables."""

from __future__ import annotations

from typing import Any

from modelbay.manifest import Dim, QuantizationInfo


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def when(iso: str | None) -> str:
    """'2026-11-22T16:20:31.123Z' -> '11-22 16:20' (UTC)."""
    return iso[5:16].replace("T", " ") if iso else "-"


def precision(q: QuantizationInfo | None) -> str:
    if q is None or q.method == "none":
        return "fp32"
    wt = (q.weight_type or "int8").lower().removeprefix("q")  # onnxruntime says "QInt8"
    return {"dynamic": f"{wt} dyn", "static": f"{wt} st", "mixed": f"{wt} mix"}.get(q.method, q.method)


def version(v: int | None) -> str:
    """'v3', or 'unset' for an alias that points nowhere."""
    return "unset" if v is None else f"v{v}"


def shape(dims: list[Dim]) -> str:
    """[batch,4] rather than a Python list's repr; '?' for an unknown dimension."""
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


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
    return text if len(text) <= width else text[: width - 1] + "…"


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}ms" if v >= 100 else f"{v:.1f}ms"


def rate(requests: int, seconds: float) -> str:
    if not requests:
        return "0"
    per_min = requests / seconds * 60
    return f"{per_min:.1f}/m" if per_min < 100 else f"{per_min / 60:.1f}/s"
