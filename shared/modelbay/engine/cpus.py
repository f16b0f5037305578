"""How many CPUs this process may really use: affinity, then the cgroup CPU quota.

``os.cpu_count()`` reports the host's CPUs. A container or a Lambda sandbox
with a fractional quota would get one onnxruntime thread per host core, and
those threads then fight over the quota (throttling shows up as p99 spikes).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cgroup_v2(root: Path) -> float | None:
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _cgroup_v1(root: Path) -> float | None:
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota in CPUs (e.g. 1.5), or None when unlimited or unknown."""
    return _cgroup_v2(root) or _cgroup_v1(root)


def usable_cpus(root: Path = Path("/sys/fs/cgroup")) -> int:
    """At least 1; the affinity mask, capped by the cgroup quota rounded up."""
    n = _affinity()
    quota = cgroup_quota(root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)
