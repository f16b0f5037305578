"""How sizes, shares, durations, times and weight precisions read to a person.

One rendering for the CLI and the TUI; ``compact`` forms fit the TUI's narrow columns.
Unknown values read as '-'.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .manifest import QuantizationInfo

_SIZE_UNITS = ("B", "KB", "MB", "GB")


def size(n: float | None, *, compact: bool = False) -> str:
    """Bytes in binary units: '530 B', '1.5 MB'; compact: '530B', '1.5M'."""
    if n is None:
        return "-"
    value, unit = float(n), _SIZE_UNITS[0]
    for unit in _SIZE_UNITS:
        if value < 1024 or unit == _SIZE_UNITS[-1]:
            break
        value /= 1024
    number = f"{value:.0f}" if unit == "B" else f"{value:.1f}"
    return f"{number}{unit[0]}" if compact else f"{number} {unit}"


def percent(v: float | None) -> str:
    """A share (0.123) as '12.3%'."""
    return "-" if v is None else f"{v * 100:.1f}%"


def ms(v: float | None) -> str:
    """Milliseconds, three significant-ish digits: '0.4ms', '12.5ms', '250ms'."""
    if v is None:
        return "-"
    return f"{v:.0f}ms" if v >= 100 else f"{v:.1f}ms"


def when(ts: float | str | None, *, seconds: bool = False, year: bool = True) -> str:
    """Epoch seconds or ISO 8601 as 'YYYY-MM-DD HH:MM' (UTC); without the year: 'MM-DD HH:MM'."""
    if ts is None or ts == "":
        return "-"
    if isinstance(ts, (int, float)):
        text = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
    else:
        text = ts.replace("T", " ")
    text = text[: 19 if seconds else 16]
    return text if year else text[5:]


def truncate(s: str, width: int) -> str:
    """At most ``width`` characters, the cut marked with '…'."""
    return s if len(s) <= width else s[: width - 1] + "…"


def precision(q: QuantizationInfo | None) -> str:
    """The weights' precision: 'fp32', or the quantized type and method ('int8 dyn', 'int8 st', 'int8 mix')."""
    if q is None or q.method == "none":
        return "fp32"
    weights = (q.weight_type or "int8").lower().removeprefix("q")  # onnxruntime says "QInt8"
    return {"dynamic": f"{weights} dyn", "static": f"{weights} st", "mixed": f"{weights} mix"}.get(q.method, q.method)


def search_summary(metrics: dict[str, Any] | None) -> str | None:
    """The variant search in one line: what it chose among how many, size and batch-32 latency against fp32."""
    search = (metrics or {}).get("search")
    if not isinstance(search, dict) or not search.get("candidates"):
        return None
    rows = {c.get("name"): c for c in search["candidates"]}
    base, chosen = search["candidates"][0], rows.get(search.get("chosen"), {})
    passed = sum(1 for c in rows.values() if c.get("status") == "passed")

    def b32(c: dict[str, Any]) -> str:
        v = (c.get("latency_ms") or {}).get("b32")
        return "-" if v is None else f"{v:.3g} ms"

    return (
        f"search: {search.get('chosen', 'nothing')} ({passed} of {len(rows) - 1} passed, objective "
        f"{search.get('objective', '?')}); size {size(base.get('size_bytes'))} -> {size(chosen.get('size_bytes'))}, "
        f"b32 {b32(base)} -> {b32(chosen)}"
    )
