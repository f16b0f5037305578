"""Which version of a split alias serves a request: the one routing rule.

A request with a route key (``x-modelbay-route-key``) lands in a fixed bucket
in [0, 100) derived from the model, the alias and the key, and goes to the
canary when its bucket is below the canary's share: the same key always
reaches the same version, and raising the share only moves keys onto the
canary, never back. Without a key the bucket is drawn at random.
"""

from __future__ import annotations

import hashlib
import random

ROUTE_KEY_HEADER = "x-modelbay-route-key"
ROUTE_HEADER = "x-modelbay-route"  # answers "stable" or "canary" when the alias is split
MAX_ROUTE_KEY = 256
_SPAN = 2**64


def bucket(model: str, alias: str, key: str) -> float:
    digest = hashlib.blake2b(f"{model}\0{alias}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * 100 / _SPAN


def to_canary(model: str, alias: str, percent: float, key: str | None, rng: random.Random | None = None) -> bool:
    """Whether this request goes to the canary of a split with ``percent`` on it."""
    if key:
        return bucket(model, alias, key[:MAX_ROUTE_KEY]) < percent
    return (rng or random).random() * 100 < percent
