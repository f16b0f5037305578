"""API keys: ``mb_<key id>_<secret>``, stored only as sha256 of the secret.

A record lives at ``system/keys/<key id>.json``, outside every tenant prefix, so
no tenant's registry can list or overwrite it. Lookup is by id; the secret's hash
is compared with ``hmac.compare_digest``. Secrets are 256-bit random, so an
unsalted sha256 is enough (there is nothing to brute-force as with passwords).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from ..errors import BadRequest, NotFound, PreconditionFailed, Unauthorized
from ..layout import check_name
from ..storage import ObjectStore
from .principal import SCOPES

PREFIX = "system/keys/"
KEY_RE = re.compile(r"mb_([0-9a-f]{12})_([A-Za-z0-9_-]{32,128})")
KEY_ID_RE = re.compile(r"[0-9a-f]{12}")


def sha256_hex(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def now() -> float:
    return round(time.time(), 3)


def check_scopes(scopes: Iterable[str]) -> list[str]:
    out = sorted(set(scopes))
    if not out:
        raise BadRequest("a key needs at least one scope", field="scopes", allowed=list(SCOPES))
    if bad := [s for s in out if s not in SCOPES]:
        raise BadRequest(f"unknown scope(s) {', '.join(map(repr, bad))}", field="scopes", allowed=list(SCOPES))
    return out


def check_key_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise NotFound(f"no key {key_id!r}", key_id=key_id)
    return key_id


@dataclass
class KeyRecord:
    key_id: str
    tenant: str
    scopes: list[str]
    name: str = ""
    root: bool = False
    secret_sha256: str = ""
    created_at: float = 0.0
    created_by: str | None = None
    expires_at: float | None = None
    revoked_at: float | None = None
    revoked_by: str | None = None
    gateway_key_id: str | None = None  # the API Gateway key mirroring this one, on AWS

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > time.time())

    @property
    def display(self) -> str:
        return f"mb_{self.key_id}_…"

    def public(self) -> dict:
        """Everything but the hash."""
        d = asdict(self)
        d.pop("secret_sha256")
        d["prefix"] = self.display
        d["active"] = self.active
        return d


@dataclass
class KeyStore:
    store: ObjectStore
    cache_seconds: float = 30.0
    _cache: dict[str, tuple[KeyRecord, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _key(self, key_id: str) -> str:
        return f"{PREFIX}{check_key_id(key_id)}.json"

    def create(
        self,
        tenant: str,
        scopes: Iterable[str],
        *,
        name: str = "",
        root: bool = False,
        actor: str | None = None,
        expires_in: float | None = None,
    ) -> tuple[KeyRecord, str]:
        """Mint a key; the plaintext is returned once and never stored."""
        check_name(tenant, "tenant")
        if len(name) > 128:
            raise BadRequest("key name is longer than 128 characters", field="name")
        if expires_in is not None and expires_in <= 0:
            raise BadRequest("expires_in must be positive", field="expires_in")
        scopes = check_scopes(scopes)
        for _ in range(5):
            key_id = secrets.token_hex(6)
            secret = secrets.token_urlsafe(32)
            rec = KeyRecord(
                key_id,
                tenant,
                scopes,
                name,
                root,
                sha256_hex(secret),
                now(),
                actor,
                now() + expires_in if expires_in else None,
            )
            try:
                self.store.put_bytes(self._key(key_id), _dumps(rec), if_none_match=True)
            except PreconditionFailed:
                continue  # 48-bit id collision: draw again
            return rec, f"mb_{key_id}_{secret}"
        raise RuntimeError("could not allocate a key id")

    def _read(self, key_id: str) -> tuple[KeyRecord, str]:
        data, etag = self.store.get_bytes(self._key(key_id))
        return KeyRecord(**json.loads(data)), etag

    def get(self, key_id: str) -> KeyRecord:
        try:
            return self._read(key_id)[0]
        except NotFound:
            raise NotFound(f"no key {key_id!r}", key_id=key_id) from None

    def list(self, tenant: str | None = None) -> list[KeyRecord]:
        out = []
        for info in self.store.list(PREFIX):
            key_id = info.key[len(PREFIX) :].removesuffix(".json")
            if not KEY_ID_RE.fullmatch(key_id):
                continue
            try:
                rec = self._read(key_id)[0]
            except NotFound:  # revoked and purged meanwhile
                continue
            if tenant is None or rec.tenant == tenant:
                out.append(rec)
        return sorted(out, key=lambda r: r.created_at)

    def any(self) -> bool:
        return next(iter(self.store.list(PREFIX)), None) is not None

    def update(self, key_id: str, **changes) -> KeyRecord:
        """Compare-and-swap on the record (revocation must not lose a concurrent change)."""
        for _ in range(20):
            rec, etag = self._read(key_id)
            for k, v in changes.items():
                setattr(rec, k, v)
            try:
                self.store.put_bytes(self._key(key_id), _dumps(rec), if_match=etag)
            except PreconditionFailed:
                continue
            with self._lock:
                self._cache.pop(key_id, None)
            return rec
        raise PreconditionFailed(f"key {key_id} is changing too fast; try again")

    def revoke(self, key_id: str, *, actor: str | None = None) -> KeyRecord:
        rec = self.get(key_id)
        if rec.revoked_at is not None:
            return rec
        return self.update(key_id, revoked_at=now(), revoked_by=actor)

    def verify(self, token: str, *, fetch: bool = True) -> KeyRecord | None:
        """The active record of a presented key, or Unauthorized.

        Records are cached for ``cache_seconds``: a revocation reaches warm
        Lambda containers within that time. With ``fetch=False`` a cache miss
        returns None instead of reading the store (the event loop's fast path).
        """
        m = KEY_RE.fullmatch(token or "")
        if not m:
            raise Unauthorized("malformed API key")
        key_id, secret = m.groups()
        rec = self._cached(key_id)
        if rec is None:
            if not fetch:
                return None
            try:
                rec = self._read(key_id)[0]
            except NotFound:
                raise Unauthorized("unknown API key") from None
            with self._lock:
                self._cache[key_id] = (rec, time.monotonic())
        if not hmac.compare_digest(rec.secret_sha256, sha256_hex(secret)):
            raise Unauthorized("unknown API key")
        if rec.revoked_at is not None:
            raise Unauthorized("this API key was revoked", key_id=key_id)
        if not rec.active:
            raise Unauthorized("this API key has expired", key_id=key_id)
        return rec

    def _cached(self, key_id: str) -> KeyRecord | None:
        with self._lock:
            hit = self._cache.get(key_id)
        if hit and time.monotonic() - hit[1] < self.cache_seconds:
            return hit[0]
        return None


def _dumps(rec: KeyRecord) -> bytes:
    return json.dumps(asdict(rec), indent=1, sort_keys=True).encode()
