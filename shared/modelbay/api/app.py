"""App factories. One FastAPI app per role; the local server mounts both roles.

Lambda functions build theirs at import time (the init phase), so a warm
container pays for it once.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from .. import __version__
from ..settings import Settings
from ..storage import ObjectStore, open_store
from .errors import install_error_handlers

log = logging.getLogger("modelbay")


def create_app(settings: Settings | None = None, store: ObjectStore | None = None, *,
               management: bool = True, inference: bool = True) -> FastAPI:
    settings = settings or Settings.from_env()
    app = FastAPI(title="modelbay", version=__version__, docs_url="/docs", openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.store = store or open_store(settings.store_url)
    from ..metrics import sink_from_settings

    app.state.metrics = sink_from_settings(settings)
    install_error_handlers(app)
    from ..auth.http import install_auth

    install_auth(app, settings, app.state.store)  # before any route: every route inherits its guard; gate outermost
    from .body_limit import install_body_limit

    install_body_limit(app, settings.limits.max_body_bytes)
    if management:
        from .auth_routes import router as auth_router
        from .registry_routes import router

        app.include_router(router)
        app.include_router(auth_router)
        from .metrics_routes import router as metrics_router

        app.include_router(metrics_router)
    if inference:
        from .inference_routes import include_inference

        include_inference(app)
    return app


def create_registry_app(settings: Settings | None = None) -> FastAPI:
    return create_app(settings, management=True, inference=False)


def create_inference_app(settings: Settings | None = None) -> FastAPI:
    return create_app(settings, management=False, inference=True)
