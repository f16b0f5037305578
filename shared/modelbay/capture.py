"""Payload capture: a sampled share of a model's requests and responses, kept as compressed JSON Lines.

Off by default; per model, a sampling rate and whether inputs, outputs or both
are kept (``tenants/<t>/capture-config/<model>.json``). The inference service
hands each sampled request to a ``Capturer``: an append to a bounded buffer,
nothing else on the request's path (no encoding, no I/O). A background thread
writes the buffer in batches, one object per (tenant, model, day) batch:

    tenants/<t>/capture/<model>/<yyyy>/<mm>/<dd>/<HHMMSS>-<random>.jsonl.gz

each line ``{"id", "at", "model", "version", "route", "latency_ms", "input"?, "output"?}``.
A full buffer drops new records (counted), and a failed write is logged and
dropped: capture never fails or holds up a prediction. On S3 the objects carry
a tag that the bucket's lifecycle rule expires.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from .errors import BadRequest, NotFound
from .layout import check_name
from .storage import ObjectStore

log = logging.getLogger("modelbay.capture")
CAPTURE_TAG = "modelbay-capture=true"
SUFFIX = ".jsonl.gz"
MAX_EXPORT_RECORDS = 50_000


class CaptureConfig(BaseModel):
    sample_rate: float = Field(0.0, ge=0, le=1, description="share of requests captured; 0: off")
    inputs: bool = True
    outputs: bool = True


class CaptureExport(BaseModel):
    model: str
    since: float
    records: list[dict[str, Any]]
    truncated: bool = Field(False, description="more records matched than the limit")


def config_key(tenant: str, model: str) -> str:
    return f"tenants/{check_name(tenant, 'tenant')}/capture-config/{check_name(model, 'model name')}.json"


def data_prefix(tenant: str, model: str) -> str:
    return f"tenants/{check_name(tenant, 'tenant')}/capture/{check_name(model, 'model name')}/"


def read_config(store: ObjectStore, tenant: str, model: str) -> CaptureConfig:
    try:
        return CaptureConfig.model_validate_json(store.get_bytes(config_key(tenant, model))[0])
    except NotFound:
        return CaptureConfig()


def write_config(store: ObjectStore, tenant: str, model: str, config: CaptureConfig) -> CaptureConfig:
    store.put_bytes(config_key(tenant, model), config.model_dump_json().encode())
    return config


@dataclass
class _Record:
    tenant: str
    model: str
    version: int
    route: str | None
    request_id: str
    at: float
    latency_ms: float
    input: Any
    output: Any


def _plain(o: Any) -> Any:
    """JSON for what requests and responses hold: arrays (OIP tensors), numpy scalars, bytes."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    return str(o)


class Capturer:
    """The process's capture buffer and its writer thread."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        buffer_records: int = 10_000,
        batch_records: int = 500,
        flush_seconds: float = 10.0,
        config_ttl: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.batch_records = batch_records
        self.flush_seconds = flush_seconds
        self.config_ttl = config_ttl
        self.rng = rng or random.Random()
        self._buffer: deque[_Record] = deque()
        self._limit = buffer_records
        self._lock = threading.Lock()
        self._configs: dict[tuple[str, str], tuple[CaptureConfig, float]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0

    # ---------------------------------------------------------------- the request path
    def config(self, tenant: str, model: str) -> CaptureConfig:
        """The model's capture settings, re-read at most once per ``config_ttl``; off if unreadable."""
        now = time.monotonic()
        hit = self._configs.get((tenant, model))
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            config = read_config(self.store, tenant, model)
        except Exception as e:  # capture must never fail a prediction
            log.warning("capture settings of %s/%s unreadable: %s", tenant, model, e)
            config = CaptureConfig()
        self._configs[(tenant, model)] = (config, now + self.config_ttl)
        return config

    def sampled(self, tenant: str, model: str) -> CaptureConfig | None:
        config = self.config(tenant, model)
        if config.sample_rate > 0 and self.rng.random() < config.sample_rate:
            return config
        return None

    def record(
        self,
        config: CaptureConfig,
        tenant: str,
        model: str,
        version: int,
        route: str | None,
        latency_ms: float,
        inputs: Any,
        outputs: Any,
        request_id: str | None = None,
    ) -> None:
        rec = _Record(
            tenant,
            model,
            version,
            route,
            (request_id or secrets.token_hex(8))[:128],
            time.time(),
            latency_ms,
            inputs if config.inputs else None,
            outputs if config.outputs else None,
        )
        with self._lock:
            if len(self._buffer) >= self._limit:
                self.dropped += 1
                return
            self._buffer.append(rec)
            full = len(self._buffer) >= self.batch_records
        self._start()
        if full:
            self._wake.set()

    # ---------------------------------------------------------------- the writer
    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, daemon=True, name="modelbay-capture")
                    self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write what is buffered now; returns how many records were written. Never raises."""
        with self._lock:
            records = list(self._buffer)
            self._buffer.clear()
        batches: dict[tuple[str, str, str], list[_Record]] = {}
        for r in records:
            day = datetime.fromtimestamp(r.at, UTC).strftime("%Y/%m/%d")
            batches.setdefault((r.tenant, r.model, day), []).append(r)
        written = 0
        for (tenant, model, day), batch in batches.items():
            try:
                lines = [json.dumps(_line(r), default=_plain, separators=(",", ":")) for r in batch]
                body = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=5)
                stamp = datetime.fromtimestamp(batch[0].at, UTC).strftime("%H%M%S")
                key = f"{data_prefix(tenant, model)}{day}/{stamp}-{secrets.token_hex(6)}{SUFFIX}"
                self.store.put_bytes(key, body, if_none_match=True, tags=CAPTURE_TAG)
                written += len(batch)
            except Exception as e:  # logged and dropped: capture never takes the server down
                log.warning("capture of %d records of %s/%s lost: %s", len(batch), tenant, model, e)
                self.dropped += len(batch)
        self.written += written
        return written


def _line(r: _Record) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": r.request_id,
        "at": round(r.at, 3),
        "model": r.model,
        "version": r.version,
        "route": r.route,
        "latency_ms": round(r.latency_ms, 3),
    }
    if r.input is not None:
        line["input"] = r.input
    if r.output is not None:
        line["output"] = r.output
    return line


def export(store: ObjectStore, tenant: str, model: str, since: float, limit: int = MAX_EXPORT_RECORDS) -> CaptureExport:
    """The records captured since ``since`` (epoch seconds), oldest first, at most ``limit``."""
    if not 1 <= limit <= MAX_EXPORT_RECORDS:
        raise BadRequest(f"limit must be 1..{MAX_EXPORT_RECORDS}", field="limit")
    prefix = data_prefix(tenant, model)
    first_day = datetime.fromtimestamp(since, UTC).strftime("%Y/%m/%d")
    out: list[dict[str, Any]] = []
    truncated = False
    for info in sorted(store.list(prefix), key=lambda i: i.key):
        rel = info.key[len(prefix) :]
        if not rel.endswith(SUFFIX) or rel[:10] < first_day:
            continue
        try:
            text = gzip.decompress(store.get_bytes(info.key)[0]).decode()
        except (NotFound, OSError, EOFError):  # expired meanwhile, or not ours
            continue
        for line in text.splitlines():
            rec = json.loads(line)
            if rec.get("at", 0) < since:
                continue
            if len(out) >= limit:
                truncated = True
                break
            out.append(rec)
    out.sort(key=lambda r: r.get("at", 0))
    return CaptureExport(model=model, since=since, records=out, truncated=truncated)
