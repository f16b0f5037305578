"""A sparse log-bucketed latency histogram: mergeable, bounded, ~1% relative error.

Buckets grow by 2% so a percentile read back from them is within 1% of the true
sample value; a day of minutes for one model stays a few kilobytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

GROWTH = 1.02
_LOG = math.log(GROWTH)
FLOOR_MS = 0.001  # anything faster is recorded as 1 µs


def bucket_of(ms: float) -> int:
    return math.floor(math.log(max(ms, FLOOR_MS)) / _LOG)


def value_of(bucket: int) -> float:
    # geometric midpoint of [GROWTH**b, GROWTH**(b+1))
    return GROWTH ** (bucket + 0.5)


def merge(into: dict[int, int], other: Mapping[int, int]) -> None:
    for b, n in other.items():
        into[b] = into.get(b, 0) + n


def percentiles(hist: Mapping[int, int], qs: Iterable[float]) -> list[float | None]:
    """Nearest-rank percentiles (q in 0..100) of the samples counted in ``hist``."""
    total = sum(hist.values())
    qs = list(qs)
    if total == 0:
        return [None] * len(qs)
    ranks = [max(1, math.ceil(q / 100 * total)) for q in qs]
    out: list[float | None] = [None] * len(qs)
    seen = 0
    order = sorted(range(len(qs)), key=lambda i: ranks[i])
    k = 0
    for b in sorted(hist):
        seen += hist[b]
        while k < len(order) and ranks[order[k]] <= seen:
            out[order[k]] = value_of(b)
            k += 1
        if k == len(order):
            break
    return out
