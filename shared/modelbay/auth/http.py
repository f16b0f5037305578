"""Authentication of HTTP requests, installed on every app by ``install_auth``.

``AuthGate`` is the outermost ASGI layer of every app: no request reaches
routing, a fast path or a mounted app before it has checked the key and the
scope its path needs (``SCOPE_BY_PREFIX``: ``/v1`` and ``/v2`` need
``invoke``, ``/registry`` needs ``manage``, key/tenant/audit routes need
``admin``), so a route that forgets ``require(scope)`` is still protected.
One path under ``/registry`` needs ``invoke`` alone (``SCOPE_BY_PATH``):
feedback, the ground truth an application sends for its own predictions.
Route-level ``require`` may only narrow this. The exceptions are listed in
``PUBLIC``: health probes, the API docs, and the local upload URL, which its
session token authorises as a presigned URL would.

Credentials: ``Authorization: Bearer <key>`` or ``x-api-key: <key>`` (what API
Gateway usage plans read). The client sends both, with the same value.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api.errors import error_response
from ..errors import CredentialsUnavailable, Unauthorized, library_message
from ..settings import Settings
from ..storage import ObjectStore
from .audit import AuditLog
from .gateway import UsagePlanKeys
from .keys import KeyStore, sha256_hex
from .principal import SCOPES, Principal, require_scope
from .service import Caller, KeyAdmin
from .tenants import TenantStore

log = logging.getLogger("modelbay.auth")
# how long an unreadable bootstrap secret is answered 503 before it is read again
SECRET_RETRY_S = 10.0

PUBLIC = frozenset(
    {
        "/health",
        "/v2/health/live",
        "/v2/health/ready",
        "/v1/health",
        "/registry/uploads/{upload_id}/files/{file}",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
    }
)
_PUBLIC_RE = re.compile("|".join(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) for p in PUBLIC))
ANY_KEY = frozenset({"/registry/whoami"})
# Paths under /registry that an invoking application uses: ground truth for its own predictions.
SCOPE_BY_PATH = ((re.compile(r"/registry/models/[^/]+/feedback"), "invoke"),)
# first match wins
SCOPE_BY_PREFIX = (
    ("/registry/keys", "admin"),
    ("/registry/tenants", "admin"),
    ("/registry/audit", "admin"),
    ("/registry", "manage"),
    ("/v1", "invoke"),
    ("/v2", "invoke"),
)
BOOTSTRAP_ID = "bootstrap"


def required_scope(path: str) -> str | None:
    for pattern, scope in SCOPE_BY_PATH:
        if pattern.fullmatch(path):
            return scope
    for prefix, scope in SCOPE_BY_PREFIX:
        if path == prefix or path.startswith(prefix + "/"):
            return scope
    return None


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    bearer = None
    if auth is not None:
        kind, _, value = auth.partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            raise Unauthorized("use 'Authorization: Bearer <api key>'")
        bearer = value.strip()
    api_key = (request.headers.get("x-api-key") or "").strip() or None
    if bearer and api_key and not hmac.compare_digest(bearer, api_key):
        raise Unauthorized("Authorization and x-api-key carry different keys")
    return bearer or api_key


class Authenticator:
    """``app.state.authenticate``: the request's Principal, or Unauthorized."""

    def __init__(self, keys: KeyStore, settings: Settings) -> None:
        self.keys = keys
        self.settings = settings
        self._bootstrap: str | None = sha256_hex(settings.bootstrap_key) if settings.bootstrap_key else None
        self._bootstrap_loaded = settings.bootstrap_key_secret is None
        self._lock = threading.Lock()
        self._secret_retry_at = 0.0

    def bootstrap_sha256(self) -> str | None:
        # fetched on first need, not at import: the secret costs a call the init phase need not pay
        if not self._bootstrap_loaded:
            with self._lock:
                if not self._bootstrap_loaded:
                    self._bootstrap = self._read_bootstrap_secret()
                    self._bootstrap_loaded = True
        return self._bootstrap

    def _read_bootstrap_secret(self) -> str | None:
        """The secret's key hashed; ``CredentialsUnavailable`` (503) when it cannot be read.

        A failure is remembered for ``SECRET_RETRY_S``: a stranger sending keys cannot
        turn each request into a Secrets Manager call. Keys minted by modelbay (``mb_``)
        never need the secret and keep working meanwhile.
        """
        if time.monotonic() < self._secret_retry_at:
            raise self._secret_unavailable()
        secret_id = self.settings.bootstrap_key_secret
        try:
            import boto3

            value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"].strip()
        except Exception as e:
            self._secret_retry_at = time.monotonic() + SECRET_RETRY_S
            code = getattr(e, "response", {}).get("Error", {}).get("Code") or type(e).__name__
            log.error(
                "the bootstrap key's secret %s (MODELBAY_BOOTSTRAP_KEY_SECRET) cannot be read: %s: %s; "
                "check that it exists and holds a SecretString, and that this role may secretsmanager:GetSecretValue",
                secret_id,
                code,
                library_message(e),
            )
            raise self._secret_unavailable() from None
        return sha256_hex(value) if value else None

    def _secret_unavailable(self) -> CredentialsUnavailable:
        left = max(1, round(self._secret_retry_at - time.monotonic()))
        return CredentialsUnavailable(
            "this key cannot be checked now: the server cannot read its bootstrap key (see the server log); "
            "keys minted by modelbay (mb_...) are not affected",
            retry_after=left,
        )

    def __call__(self, request: Request, *, fetch: bool = True) -> Principal | None:
        """With ``fetch=False``, None when answering would need a store or secret read."""
        cached = getattr(request.state, "principal", None)
        if cached is not None:
            return cached
        key = presented_key(request)
        if key is None:
            raise Unauthorized("an API key is required: 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
        if not key.startswith("mb_"):
            if not fetch and not self._bootstrap_loaded:
                return None
            boot = self.bootstrap_sha256()
            if boot is None or not hmac.compare_digest(boot, hashlib.sha256(key.encode()).hexdigest()):
                raise Unauthorized("unknown API key")
            principal = Principal(self.settings.default_tenant, frozenset(SCOPES), BOOTSTRAP_ID, root=True)
        else:
            rec = self.keys.verify(key, fetch=fetch)
            if rec is None:
                return None
            principal = Principal(rec.tenant, frozenset(rec.scopes), rec.key_id, root=rec.root)
        request.state.principal = principal
        return principal


async def authenticate(auth: Callable[..., Any], request: Request) -> Principal:
    """The principal without I/O when possible (the key is cached): no thread hop on warm requests.

    Any other hook (``app.state.authenticate`` is a plain ``request -> Principal``
    callable by contract) and any store or secret read run in the threadpool.
    """
    cached: Principal | None = auth(request, fetch=False) if isinstance(auth, Authenticator) else None
    if cached is not None:
        return cached
    principal: Principal = await run_in_threadpool(auth, request)
    return principal


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class AuthGate:
    """Outermost ASGI layer: authenticate, check the path's scope, leave the principal in the request
    state (where ``get_principal`` finds it); refusals are rendered like every other error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = _route_path(scope)
        request = Request(scope)
        auth = getattr(request.app.state, "authenticate", None)
        if auth is not None and not _PUBLIC_RE.fullmatch(path):
            try:
                principal = await authenticate(auth, request)
                require_scope(principal, None if path in ANY_KEY else required_scope(path))
            except Exception as e:
                return await error_response(e, f"{scope.get('method')} {path}")(scope, receive, send)
            request.state.principal = principal
        await self.app(scope, receive, send)


def protect(app: FastAPI) -> None:
    """Make the gate the outermost layer whenever the app builds its middleware stack.

    Wrapping the built stack (rather than ``add_middleware``) keeps it outside
    middleware added later, such as the inference fast paths.
    """
    build = app.build_middleware_stack

    def build_with_gate() -> ASGIApp:
        return AuthGate(build())

    app.build_middleware_stack = build_with_gate  # type: ignore[method-assign]


def install_auth(app: FastAPI, settings: Settings, store: ObjectStore) -> None:
    keys = KeyStore(store, cache_seconds=settings.key_cache_seconds)
    gateway = UsagePlanKeys(settings.usage_plan) if settings.usage_plan else None
    app.state.audit = AuditLog(store)
    app.state.key_admin = KeyAdmin(keys, TenantStore(store, settings.default_tenant), app.state.audit, gateway)
    if settings.auth:
        app.state.authenticate = Authenticator(keys, settings)
    else:
        log.warning("authentication is OFF: every caller is an admin of tenant %r", settings.default_tenant)
    protect(app)


def caller(principal: Principal) -> Caller:
    return Caller(principal.tenant, principal.root, principal.actor)
