"""The one app factory: management, inference, or both (the local server).

Lambda functions build theirs at import time (the init phase), so a warm
container pays for it once; ``functions/*/app.py`` only choose the role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI

from .. import __version__
from ..settings import Settings
from ..storage import ObjectStore, open_store

if TYPE_CHECKING:
    from ..engine import Engine
    from ..metrics import MetricsBackend


def create_app(
    settings: Settings | None = None,
    store: ObjectStore | None = None,
    *,
    engine: Engine | None = None,
    inline: bool | None = None,
    metrics: MetricsBackend | None = None,
    management: bool = True,
    inference: bool = True,
) -> FastAPI:
    """Build an app.

    ``engine``: a running one (the Lambda entry starts its prewarm before FastAPI
    is even imported); default a new one on ``store``. ``inline``: run inference
    on the event loop; default on Lambda only, where one request runs at a time.
    ``metrics``: the sink; default the one the settings choose.
    """
    settings = settings or Settings.from_env()
    if store is None:
        store = engine.store if engine is not None else open_store(settings.store_url, settings)
    app = FastAPI(
        title="modelbay",
        version=__version__,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.store = store
    if metrics is None:
        from ..metrics import sink_from_settings

        metrics = sink_from_settings(settings)
    app.state.metrics = metrics
    if management and inference and not settings.on_lambda:
        _install_guard_rails(app, settings)
    from ..auth.http import install_auth
    from .body_limit import install_body_limit
    from .errors import install_error_handlers

    install_error_handlers(app)
    install_auth(app, settings, store)  # its gate wraps the whole stack, fast paths included
    install_body_limit(app, settings.limits.max_body_bytes)
    if management:
        from .auth_routes import router as auth_router
        from .canary_routes import router as canary_router
        from .capture_routes import router as capture_router
        from .drift_routes import router as drift_router
        from .metrics_routes import router as metrics_router
        from .registry_routes import router as registry_router
        from .shadow_routes import router as shadow_router

        app.include_router(registry_router)
        app.include_router(auth_router)
        app.include_router(metrics_router)
        app.include_router(canary_router)
        app.include_router(capture_router)
        app.include_router(drift_router)
        app.include_router(shadow_router)
    if inference:
        from ..engine import Engine, InferenceService
        from .inference_routes import include_inference

        if engine is None:
            engine = Engine(store, settings)
        include_inference(
            app, InferenceService(engine, metrics, settings), inline=settings.on_lambda if inline is None else inline
        )
        if settings.prewarm:
            engine.prewarm_in_background()  # no-op when the caller already started it
    return app


def _install_guard_rails(app: FastAPI, settings: Settings) -> None:
    """The local server checks canary guard rails itself, against the metrics it keeps in memory
    (on AWS a scheduled function does: functions/canary). Startup/shutdown hooks, as the other parts
    install theirs: an app lifespan would make Starlette skip them."""
    if settings.canary_check_seconds <= 0:
        return
    stops: list[Callable[[], None]] = []

    def start() -> None:
        from ..guard import watch

        stops.append(watch(app.state.store, app.state.metrics, settings.limits, settings.canary_check_seconds))

    def stop() -> None:
        while stops:
            stops.pop()()

    app.router.on_startup.append(start)
    app.router.on_shutdown.append(stop)


def create_registry_app(settings: Settings | None = None) -> FastAPI:
    return create_app(settings, management=True, inference=False)


def create_inference_app(settings: Settings | None = None) -> FastAPI:
    return create_app(settings, management=False, inference=True)
