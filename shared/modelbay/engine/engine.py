"""The engine: resolve a reference, fetch and verify its files, build and cache its session.

Transport-free; the HTTP routes, the Lambda handler and the benchmarks call it.
A cold version is loaded once even when concurrent requests arrive for it:
the first caller loads, the others wait for the same future.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadRequest, IntegrityError, ModelbayError, NotFound, StoreUnavailable, TooLarge
from ..layout import MODEL_FILE, Layout
from ..manifest import Manifest
from ..refs import parse_ref
from ..settings import Settings
from ..storage import ObjectStore
from .autotune import Records, TuneConfig, Tuner
from .diskcache import DiskCache
from .errors import LoadFailure, library_message
from .lru import ByteLRU
from .model import LoadedModel
from .resolve import Resolver
from .runs import Runs
from .session import SessionConfig, arena_limit
from .timing import Timings

log = logging.getLogger("modelbay.engine")
MB = 1024**2
# onnxruntime holds the weights plus prepacked copies and arenas: a session
# weighs about twice its file. The estimate only has to rank and bound.
SESSION_WEIGHT = 2


@dataclass
class EngineConfig:
    alias_ttl: float = 5.0
    session_cache_bytes: int = 2048 * MB
    disk_cache_bytes: int = 400 * MB
    session: SessionConfig = field(default_factory=SessionConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)  # off unless the settings say otherwise
    inference_timeout_ms: float | None = 30_000.0
    max_output_bytes: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        return cls(
            alias_ttl=settings.alias_ttl,
            session_cache_bytes=settings.session_cache_bytes,
            disk_cache_bytes=settings.disk_cache_mb * MB,
            session=SessionConfig.from_settings(settings),
            tune=TuneConfig.from_settings(settings),
            inference_timeout_ms=settings.inference_timeout_seconds * 1000,
            max_output_bytes=settings.limits.max_output_bytes,
        )


class Engine:
    def __init__(self, store: ObjectStore, settings: Settings, config: EngineConfig | None = None) -> None:
        self.store = store
        self.settings = settings
        self.config = config or EngineConfig.from_settings(settings)
        self.resolver = Resolver(store, settings.limits, alias_ttl=self.config.alias_ttl)
        self.disk = DiskCache(settings.cache_dir, self.config.disk_cache_bytes)
        self.scratch = Path(settings.cache_dir) / "sessions"  # where each session is built alone
        self.tuner = Tuner(self.config.tune, Records(Path(settings.cache_dir) / "tuning"))
        timeout = self.config.inference_timeout_ms
        self.runs = Runs(timeout / 1000 if timeout else None)
        self.sessions: ByteLRU[LoadedModel] = ByteLRU(self.config.session_cache_bytes)
        self._loading: dict[tuple[str, str, int], Future[LoadedModel]] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many sessions this process built (tests and benchmarks read it)
        self._prewarm: tuple[threading.Thread, dict[str, int | str]] | None = None

    # -------------------------------------------------------------- lookups
    def resolve(self, tenant: str, name: str, ref: str | int | None = None) -> Manifest:
        return self.resolver.resolve(tenant, name, ref)

    def get(
        self,
        tenant: str,
        name: str,
        ref: str | int | None = None,
        timings: Timings | None = None,
        route_key: str | None = None,
    ) -> LoadedModel:
        """The servable model for a reference (a split alias picks a side per request); loads it if cold."""
        return self.load(tenant, self.resolve_timed(tenant, name, ref, timings, route_key), timings)

    def resolve_timed(
        self, tenant: str, name: str, ref: str | int | None, timings: Timings | None, route_key: str | None = None
    ) -> Manifest:
        """``resolve`` for one request (a split alias picks its side), noting in ``timings`` how long it took,
        which version it found and which side of a split it took."""
        t0 = time.perf_counter()
        manifest, side = self.resolver.route(tenant, name, ref, route_key)
        if timings is not None:
            timings.resolve_ms = (time.perf_counter() - t0) * 1000
            timings.version = manifest.version
            timings.route = side
        return manifest

    def stop(self) -> int:
        """Terminate every inference in flight and refuse new ones (the server is exiting)."""
        return self.runs.stop()

    def resume(self) -> None:
        """Accept inferences again after ``stop`` (the app's next lifespan)."""
        self.runs.resume()

    def cached(self, tenant: str, manifest: Manifest) -> LoadedModel | None:
        return self.sessions.get((tenant, manifest.name, manifest.version))

    # -------------------------------------------------------------- loading
    def load(self, tenant: str, manifest: Manifest, timings: Timings | None = None) -> LoadedModel:
        key = (tenant, manifest.name, manifest.version)
        model = self.sessions.get(key)
        if model is not None:
            return model
        with self._lock:
            model = self.sessions.get(key)
            if model is not None:
                return model
            future = self._loading.get(key)
            owner = future is None
            if future is None:
                future = self._loading[key] = Future()
        if not owner:
            t0 = time.perf_counter()
            model = future.result()  # re-raises the loader's error
            if timings is not None:  # this request waited for someone else's cold load
                timings.fetch_ms = (time.perf_counter() - t0) * 1000
            return model
        try:
            model = self._load(tenant, manifest, timings)
            self.sessions.put(key, model, model.size * SESSION_WEIGHT)
            future.set_result(model)
            return model
        except BaseException as e:
            future.set_exception(e)
            raise
        finally:
            with self._lock:
                self._loading.pop(key, None)

    def _load(self, tenant: str, manifest: Manifest, timings: Timings | None) -> LoadedModel:
        from ..postprocess import build_postprocessor
        from ..preprocess import build_preprocessor

        layout = Layout(tenant)
        t0 = time.perf_counter()
        try:
            path, _ = self.disk.fetch(
                self.store, layout.file(manifest.name, manifest.version, MODEL_FILE), manifest.sha256
            )
            files = {
                f: self.disk.fetch(self.store, layout.file(manifest.name, manifest.version, f), info.sha256)[0]
                for f, info in manifest.files.items()
            }
        except NotFound:
            raise LoadFailure(
                f"{manifest.name} version {manifest.version}: its files are missing from the store",
                model=manifest.name,
                version=manifest.version,
            ) from None
        except (IntegrityError, StoreUnavailable) as e:
            raise LoadFailure(
                f"{manifest.name} version {manifest.version}: {e.message}",
                model=manifest.name,
                version=manifest.version,
            ) from None
        t1 = time.perf_counter()
        try:
            session, choice = self.tuner.session(path, manifest.sha256, self.config.session, self.scratch)
        except Exception as e:
            log.warning("%s/%s v%d: session build failed: %s", tenant, manifest.name, manifest.version, e)
            raise LoadFailure(
                f"{manifest.name} version {manifest.version}: onnxruntime cannot load it: {library_message(e)}",
                model=manifest.name,
                version=manifest.version,
            ) from None
        try:
            pre = build_preprocessor(manifest, files)
            post = build_postprocessor(manifest)
        except ModelbayError as e:
            raise LoadFailure(
                f"{manifest.name} version {manifest.version}: {e.message}",
                model=manifest.name,
                version=manifest.version,
            ) from None
        t2 = time.perf_counter()
        self.loads += 1
        size = manifest.size + sum(f.size for f in manifest.files.values())
        model = LoadedModel(
            manifest,
            session,
            files,
            pre,
            post,
            size=size,
            fetch_ms=(t1 - t0) * 1000,
            load_ms=(t2 - t1) * 1000,
            runs=self.runs,
            memory_limit=arena_limit() if self.config.session.memory_limit_bytes else None,
            max_output_bytes=self.config.max_output_bytes,
            tuning=choice.as_dict() if choice else None,
        )
        if timings is not None:
            timings.cold_start = True
            timings.fetch_ms = (t1 - t0) * 1000
            timings.load_ms = (t2 - t1) * 1000
        log.info(
            "loaded %s/%s v%d: fetch %.1f ms, session %.1f ms",
            tenant,
            manifest.name,
            manifest.version,
            (t1 - t0) * 1000,
            (t2 - t1) * 1000,
        )
        return model

    # -------------------------------------------------------------- warm-up
    def prewarm_in_background(self, refs: list[str] | str | None = None, tenant: str | None = None) -> None:
        """Start ``prewarm`` in a thread, so its downloads and session builds overlap other start-up work.

        Requests that arrive meanwhile wait for the same single-flight load.
        """
        if self._prewarm is not None:
            return
        result: dict[str, int | str] = {}
        thread = threading.Thread(
            target=lambda: result.update(self.prewarm(refs, tenant)), name="modelbay-prewarm", daemon=True
        )
        self._prewarm = (thread, result)
        thread.start()

    def wait_prewarm(self, timeout: float | None = None) -> dict[str, int | str]:
        if self._prewarm is None:
            return {}
        thread, result = self._prewarm
        thread.join(timeout)
        return result

    def prewarm(self, refs: list[str] | str | None = None, tenant: str | None = None) -> dict[str, int | str]:
        """Load ``NAME[@version|:alias]`` references now (Lambda's init phase); never raises.

        Without ``refs``, the settings' ``prewarm`` list. Returns
        ref -> loaded version, or the error message.
        """
        if refs is None:
            refs = self.settings.prewarm
        if isinstance(refs, str):
            refs = [r.strip() for r in refs.split(",") if r.strip()]
        tenant = tenant or self.settings.default_tenant
        out: dict[str, int | str] = {}
        for ref in refs:
            try:
                name, r = parse_ref(ref)
                out[ref] = self.get(tenant, name, r).version
            except ModelbayError as e:
                log.warning("prewarm %s failed: %s", ref, e.message)
                out[ref] = e.message
            except Exception as e:  # a bad prewarm must not stop the function from starting
                log.exception("prewarm %s failed", ref)
                out[ref] = f"{type(e).__name__}: {e}"
        return out


def check_instances(n: int, settings: Settings) -> None:
    if n == 0:
        raise BadRequest("no instances: send at least one")
    if n > settings.limits.max_instances:
        raise TooLarge(
            f"{n} instances; the limit is {settings.limits.max_instances} per request",
            instances=n,
            limit=settings.limits.max_instances,
        )
