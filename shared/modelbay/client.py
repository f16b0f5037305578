"""The HTTP client the CLI and the TUI use to reach any modelbay server.

Calls that are safe to repeat are retried, with backoff, for a bounded time
(``Settings.client_retry_*``) when the connection drops or the server answers
502/503/504 (or a 409 it marks retryable): reads, alias changes (each carries an
``Idempotency-Key`` the server recognises), deletes, uploads and registrations
(the server recognises a retried upload id). Other calls are retried only when
no connection could be made, so nothing was sent. What is still failing then is
an ``ApiError`` saying what happened and whether trying again may help.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx

from .capture import CaptureConfig, CaptureExport
from .drift import DriftReference, DriftReport
from .errors import ModelbayError
from .manifest import Manifest, VersionMetadata
from .metrics.service import FeedbackResult, ModelMetrics, Overview
from .schemas import (
    AliasList,
    AliasSet,
    AliasState,
    AuditList,
    AuditRecord,
    CanaryChange,
    CanaryStart,
    Deleted,
    FileDecl,
    GuardRails,
    GuardVerdict,
    KeyCreate,
    KeyInfo,
    KeyList,
    ModelDetail,
    ModelList,
    ModelSummary,
    NewKey,
    RegisterRequest,
    Resolution,
    Schema,
    ShadowFigures,
    TenantCreate,
    TenantInfo,
    TenantList,
    UploadRequest,
    UploadSession,
    UploadTarget,
    VersionList,
    WhoAmI,
)

Progress = Callable[[int, int], None]  # (bytes sent so far, total)
RETRY_STATUSES = {502, 503, 504}
# Idle pooled connections are dropped after this many seconds: below uvicorn's 5 s keep-alive
# (and any proxy's), so a request never goes out on a connection the server is closing, which
# answered "Server disconnected without sending a response" under load.
KEEPALIVE_SECONDS = 2.0
BACKOFF_BASE = 0.25
BACKOFF_CAP = 4.0


class ApiError(ModelbayError):
    """An error answer from the server, with its status and JSON body.

    ``retryable``: whether the same call may succeed later (the server said so, or it was
    unreachable or unavailable); the message says what happened in words.
    """

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("error") or body), **{k: v for k, v in body.items() if k != "error"})
        self.status = status
        self.code = str(body.get("code", "error"))
        self.retryable = bool(body.get("retryable", status in RETRY_STATUSES or self.code == "unreachable"))


def _unreachable(url: str, e: httpx.TransportError) -> ApiError:
    reasons = [
        (httpx.ConnectTimeout, "no connection within the timeout"),
        (httpx.ConnectError, "nothing answers there (is the server running?)"),
        (httpx.RemoteProtocolError, "the server closed the connection without answering"),
        (httpx.ReadTimeout, "no answer within the timeout"),
        (httpx.WriteTimeout, "sending took longer than the timeout"),
        (httpx.NetworkError, "the connection broke"),
    ]
    reason = next((text for kind, text in reasons if isinstance(e, kind)), "the connection failed")
    return ApiError(503, {"error": f"cannot reach {url}: {reason}", "code": "unreachable", "retryable": True})


def _error_body(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {"error": r.text[:500] or r.reason_phrase}
    return body if isinstance(body, dict) else {"error": str(body)}


S3_RETRYABLE = {"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed"}


def _upload_error_body(r: httpx.Response) -> dict[str, Any]:
    """An upload target's refusal: our server's JSON, or S3's XML ``<Error>`` read into words."""
    if "xml" not in r.headers.get("content-type", "") and "<Error>" not in r.text[:200]:
        body = _error_body(r)
        return {**body, "error": f"upload rejected: {body.get('error')}", "code": body.get("code", "upload_failed")}
    found = {k: re.search(rf"<{k}>(.*?)</{k}>", r.text, re.S) for k in ("Code", "Message")}
    code, message = (m.group(1).strip() if m else "" for m in found.values())
    return {
        "error": f"the object store refused the upload ({r.status_code} {code}: {message})"[:400],
        "code": "upload_failed",
        "retryable": r.status_code >= 500 or code in S3_RETRYABLE,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _chunks(
    path: Path, start: int, length: int, sent: list[int], total: int, progress: Progress | None
) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(1 << 20, left))
            if not chunk:
                break
            left -= len(chunk)
            sent[0] += len(chunk)
            if progress:
                progress(sent[0], total)
            yield chunk


class Client:
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        *,
        retry_attempts: int | None = None,
        retry_seconds: float | None = None,
    ) -> None:
        from .settings import Settings

        settings = Settings.from_env()
        self.url = (url or settings.url).rstrip("/")
        self.retry_attempts = retry_attempts or settings.client_retry_attempts
        self.retry_seconds = settings.client_retry_seconds if retry_seconds is None else retry_seconds
        self.api_key = api_key if api_key is not None else settings.api_key
        if self.api_key is None:
            from .auth.credentials import load_key

            self.api_key = load_key(self.url, settings.credentials_file)
        # x-api-key too: API Gateway usage plans meter that header (same value, see infra/README.md)
        headers = {"Authorization": f"Bearer {self.api_key}", "x-api-key": self.api_key} if self.api_key else {}
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS),
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing
    def request(self, method: str, path: str, *, idempotent: bool | None = None, **kw: Any) -> httpx.Response:
        """One call, retried while that is safe and may help (see the module's doc).

        ``idempotent``: whether repeating the call is harmless; default by method (not POST).
        """
        if idempotent is None:
            idempotent = method.upper() != "POST"
        return self._retrying(lambda: self.http.request(method, path, **kw), idempotent, self.url)

    def _retrying(
        self,
        send: Callable[[], httpx.Response],
        idempotent: bool,
        where: str,
        error_body: Callable[[httpx.Response], dict[str, Any]] = _error_body,
    ) -> httpx.Response:
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            wait = None
            try:
                r = send()
            except httpx.TransportError as e:
                err = _unreachable(where, e)
                # not connected: nothing was sent, so even a call that must not run twice may go again
                again = idempotent or isinstance(e, httpx.ConnectError | httpx.ConnectTimeout)
            else:
                if r.status_code < 400:
                    return r
                err = ApiError(r.status_code, error_body(r))
                again = idempotent and err.retryable
                wait = _retry_after(r)
            pause = wait if wait is not None else random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
            if not again or attempt >= self.retry_attempts or time.monotonic() + pause - start > self.retry_seconds:
                if attempt > 1:
                    err.message = f"{err.message} ({attempt} attempts in {time.monotonic() - start:.0f} s)"
                    err.args = (err.message,)
                raise err
            time.sleep(pause)

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    # ------------------------------------------------------------ registry
    def models(self) -> list[ModelSummary]:
        return ModelList.model_validate(self._json("GET", "/registry/models")).models

    def model(self, name: str) -> ModelDetail:
        return ModelDetail.model_validate(self._json("GET", f"/registry/models/{name}"))

    def versions(self, name: str) -> list[Manifest]:
        return VersionList.model_validate(self._json("GET", f"/registry/models/{name}/versions")).versions

    def version(self, name: str, ref: str | int) -> Manifest:
        return Manifest.model_validate(self._json("GET", f"/registry/models/{name}/versions/{ref}"))

    def resolve(self, name: str, ref: str | int | None = None) -> Resolution:
        """What ``name`` (or ``name`` at ``ref``) stands for on the server, with its manifest."""
        params = {"ref": str(ref)} if ref not in (None, "") else {}
        return Resolution.model_validate(self._json("GET", f"/registry/models/{name}/resolve", params=params))

    def metadata_schema(self) -> dict[str, Any]:
        """The JSON Schema of version metadata (``push --metadata``), as the server validates it."""
        schema: dict[str, Any] = self._json("GET", "/registry/schemas/metadata")
        return schema

    def delete_version(self, name: str, version: int) -> Deleted:
        return Deleted.model_validate(self._json("DELETE", f"/registry/models/{name}/versions/{version}"))

    def aliases(self, name: str) -> dict[str, int]:
        return AliasList.model_validate(self._json("GET", f"/registry/models/{name}/aliases")).aliases

    def set_alias(self, name: str, alias: str, version: int, **expected: int | None) -> AliasState:
        """Pass ``expected_version=`` (a version, or None: the alias must not exist) for compare-and-swap."""
        body = AliasSet.model_construct(None, version=version, **expected).model_dump(include={"version", *expected})
        return AliasState.model_validate(
            self._json("PUT", f"/registry/models/{name}/aliases/{alias}", json=body, headers=_change_key())
        )

    def delete_alias(self, name: str, alias: str) -> AliasState:
        return AliasState.model_validate(
            self._json("DELETE", f"/registry/models/{name}/aliases/{alias}", headers=_change_key())
        )

    def alias_history(self, name: str, alias: str) -> AliasState:
        return AliasState.model_validate(self._json("GET", f"/registry/models/{name}/aliases/{alias}/history"))

    def rollback(self, name: str, alias: str) -> AliasState:
        return AliasState.model_validate(
            self._json(
                "POST", f"/registry/models/{name}/aliases/{alias}/rollback", headers=_change_key(), idempotent=True
            )
        )

    # ------------------------------------------------------------ canaries
    def _canary(self, name: str, alias: str, what: str, body: Schema) -> AliasState:
        path = f"/registry/models/{name}/aliases/{alias}/canary" + (f"/{what}" if what else "")
        body_json = body.model_dump(exclude_unset=True)
        return AliasState.model_validate(
            self._json("POST", path, json=body_json, headers=_change_key(), idempotent=True)
        )

    def start_canary(
        self,
        name: str,
        alias: str,
        version: int,
        percent: float,
        *,
        guard: GuardRails | None = None,
        steps: Sequence[float] = (),
        **expected: int | None,
    ) -> AliasState:
        """``expected_version=``: start only if the alias's stable version is that one (compare-and-swap)."""
        body = CanaryStart(version=version, percent=percent, **expected)  # type: ignore[arg-type]
        if guard is not None:
            body.guard = guard
        if steps:
            body.steps = list(steps)
        return self._canary(name, alias, "", body)

    def ramp_canary(self, name: str, alias: str, percent: float, expected_canary: int | None = None) -> AliasState:
        return self._canary(name, alias, "ramp", _canary_change(percent=percent, expected_canary=expected_canary))

    def promote_canary(self, name: str, alias: str, expected_canary: int | None = None) -> AliasState:
        return self._canary(name, alias, "promote", _canary_change(expected_canary=expected_canary))

    def abort_canary(
        self, name: str, alias: str, expected_canary: int | None = None, reason: str | None = None
    ) -> AliasState:
        return self._canary(name, alias, "abort", _canary_change(expected_canary=expected_canary, reason=reason))

    def canary_status(self, name: str, alias: str) -> GuardVerdict:
        return GuardVerdict.model_validate(self._json("GET", f"/registry/models/{name}/aliases/{alias}/canary"))

    def check_canary(self, name: str, alias: str) -> GuardVerdict:
        """Judge the guard rails now and act on the verdict, as the scheduled check does."""
        return GuardVerdict.model_validate(
            self._json("POST", f"/registry/models/{name}/aliases/{alias}/canary/check", idempotent=True)
        )

    # ------------------------------------------------------------ shadow
    def set_shadow(self, name: str, alias: str, version: int, rate: float) -> AliasState:
        body = {"version": version, "rate": rate}
        path = f"/registry/models/{name}/aliases/{alias}/shadow"
        return AliasState.model_validate(self._json("PUT", path, json=body, headers=_change_key()))

    def stop_shadow(self, name: str, alias: str) -> AliasState:
        path = f"/registry/models/{name}/aliases/{alias}/shadow"
        return AliasState.model_validate(self._json("DELETE", path, headers=_change_key()))

    def shadow_figures(self, name: str, alias: str) -> ShadowFigures:
        return ShadowFigures.model_validate(self._json("GET", f"/registry/models/{name}/aliases/{alias}/shadow"))

    # ------------------------------------------------------------ capture
    def capture_config(self, name: str) -> CaptureConfig:
        return CaptureConfig.model_validate(self._json("GET", f"/registry/models/{name}/capture"))

    def set_capture(self, name: str, sample_rate: float, *, inputs: bool = True, outputs: bool = True) -> CaptureConfig:
        body = CaptureConfig(sample_rate=sample_rate, inputs=inputs, outputs=outputs).model_dump()
        return CaptureConfig.model_validate(
            self._json("PUT", f"/registry/models/{name}/capture", json=body, idempotent=True)
        )

    def captured(self, name: str, since: str = "1h", limit: int = 10_000) -> CaptureExport:
        params = {"since": since, "limit": str(limit)}
        return CaptureExport.model_validate(
            self._json("GET", f"/registry/models/{name}/capture/records", params=params)
        )

    def set_drift_reference(
        self, name: str, version: int, *, rows: list[list[float]] | None = None, from_capture: str | None = None
    ) -> DriftReference:
        body = {"rows": rows} if rows is not None else {"from_capture": from_capture}
        path = f"/registry/models/{name}/versions/{version}/drift-reference"
        return DriftReference.model_validate(self._json("PUT", path, json=body, idempotent=True))

    def drift(self, name: str, window: str = "1h", version: int | None = None) -> DriftReport:
        params = {"window": window} | ({"version": str(version)} if version else {})
        return DriftReport.model_validate(self._json("GET", f"/registry/metrics/models/{name}/drift", params=params))

    # ------------------------------------------------------------ keys, tenants, audit (admin)
    def whoami(self) -> WhoAmI:
        return WhoAmI.model_validate(self._json("GET", "/registry/whoami"))

    def create_key(
        self,
        scopes: list[str],
        *,
        tenant: str | None = None,
        name: str = "",
        root: bool = False,
        expires_in_days: float | None = None,
    ) -> NewKey:
        """The answer's ``key`` is the secret, shown once."""
        body = KeyCreate.model_construct(
            scopes=scopes, tenant=tenant, name=name, root=root, expires_in_days=expires_in_days
        )
        return NewKey.model_validate(self._json("POST", "/registry/keys", json=body.model_dump()))

    def keys(self, tenant: str | None = None, all_tenants: bool = False) -> list[KeyInfo]:
        params = {k: v for k, v in {"tenant": tenant, "all": "true" if all_tenants else None}.items() if v}
        return KeyList.model_validate(self._json("GET", "/registry/keys", params=params)).keys

    def revoke_key(self, key_id: str) -> KeyInfo:
        return KeyInfo.model_validate(self._json("DELETE", f"/registry/keys/{key_id}"))

    def tenants(self) -> list[TenantInfo]:
        return TenantList.model_validate(self._json("GET", "/registry/tenants")).tenants

    def create_tenant(self, name: str, description: str = "") -> TenantInfo:
        body = TenantCreate.model_construct(name=name, description=description).model_dump()
        return TenantInfo.model_validate(self._json("POST", "/registry/tenants", json=body))

    def audit(self, tenant: str | None = None, action: str | None = None, limit: int = 100) -> list[AuditRecord]:
        params = {k: v for k, v in {"tenant": tenant, "action": action, "limit": limit}.items() if v}
        return AuditList.model_validate(self._json("GET", "/registry/audit", params=params)).records

    def push(
        self,
        path: str | Path,
        name: str,
        metadata: VersionMetadata | None = None,
        side_files: Mapping[str, str | Path] | None = None,
        aliases: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> Manifest:
        """Upload straight to the store (presigned or local target), then register."""
        files = {"model.onnx": Path(path), **{f: Path(p) for f, p in (side_files or {}).items()}}
        decl = {f: FileDecl.model_construct(size=p.stat().st_size, sha256=_sha256(p)) for f, p in files.items()}
        # a retried POST opens another session; the unused one expires and is swept
        up = UploadSession.model_validate(
            self._json(
                "POST",
                f"/registry/models/{name}/uploads",
                json=UploadRequest.model_construct(files=decl).model_dump(),
                idempotent=True,
            )
        )
        total = sum(d.size for d in decl.values())
        sent = [0]
        parts: dict[str, list[str]] = {}
        for f, target in up.targets.items():
            if target.multipart_id:
                parts[f] = self._put_parts(files[f], target, sent, total, progress)
            elif target.url:
                self._put(target.url, target.headers, files[f], 0, decl[f].size, sent, total, progress)
        # bodies are built unvalidated: the server is the one judge, and its 400 says what is wrong
        body = RegisterRequest.model_construct(
            upload_id=up.upload_id, aliases=list(aliases), metadata=metadata or VersionMetadata(), parts=parts or None
        )
        # the server recognises a retried upload id: it answers the version the first attempt made
        return Manifest.model_validate(
            self._json(
                "POST",
                f"/registry/models/{name}/versions",
                json=body.model_dump(mode="json"),
                timeout=600,
                idempotent=True,
            )
        )

    def _put(
        self,
        url: str,
        headers: dict[str, str],
        path: Path,
        start: int,
        size: int,
        sent: list[int],
        total: int,
        progress: Progress | None,
    ) -> httpx.Response:
        # Presigned URLs must not carry our API key: a fresh request, not self.http.
        own = url.startswith(self.url)
        hdrs = {**headers, "Content-Length": str(size)}
        if own and self.api_key:
            hdrs["Authorization"] = f"Bearer {self.api_key}"
            hdrs["x-api-key"] = self.api_key
        before = sent[0]

        def send() -> httpx.Response:
            sent[0] = before  # a retry sends the bytes again
            content = _chunks(path, start, size, sent, total, progress)
            return httpx.put(url, content=content, headers=hdrs, timeout=600)

        where = self.url if own else httpx.URL(url).copy_with(query=None, path="/").__str__()
        return self._retrying(send, idempotent=True, where=where, error_body=_upload_error_body)

    def _put_parts(
        self, path: Path, target: UploadTarget, sent: list[int], total: int, progress: Progress | None
    ) -> list[str]:
        size = path.stat().st_size
        step = target.part_size or size
        etags = []
        for part in target.parts:
            start = (part.part_number - 1) * step
            length = min(step, size - start)
            r = self._put(part.url, {}, path, start, length, sent, total, progress)
            etags.append(r.headers["ETag"])
        return etags

    # ------------------------------------------------------------ inference
    @staticmethod
    def _timing(header: str | None) -> dict[str, float]:
        out = {}
        for part in (header or "").split(","):
            name, _, dur = part.strip().partition(";dur=")
            if name and dur:
                out[name] = float(dur)
        return out

    def predict(
        self,
        name: str,
        ref: str | int | None = None,
        instances: list[Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        """V1 predict on raw instances (texts, images as base64 or pixel lists, rows)."""
        if ref is None:
            path = f"/v1/models/{name}:predict"
        elif str(ref).isdigit():
            path = f"/v1/models/{name}/versions/{ref}:predict"
        else:
            path = f"/v1/models/{name}/labels/{ref}:predict"
        body: dict[str, Any] = {"instances": list(instances or [])}
        if parameters:
            body["parameters"] = parameters
        r = self.request("POST", path, json=body, idempotent=True)  # a prediction changes nothing
        return Prediction(
            r.json()["predictions"],
            name,
            int(r.headers.get("x-model-version", 0)),
            self._timing(r.headers.get("server-timing")),
        )

    def generate(
        self,
        model: str,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, str]] | None = None,
        **sampling: Any,
    ) -> Iterator[TextPiece]:
        """Stream generated text from the OpenAI-compatible endpoints: ``prompt`` (completions) or ``messages``
        (chat, with the model's template). ``model`` is NAME, NAME:ALIAS or NAME@VERSION; ``sampling`` takes
        max_tokens, temperature, top_p, top_k, repetition_penalty, seed, stop. The last piece has the finish."""
        import json

        chat = messages is not None
        body: dict[str, Any] = {"model": model, "stream": True, **{k: v for k, v in sampling.items() if v is not None}}
        if chat:
            body["messages"] = [dict(m) for m in messages or []]
        else:
            body["prompt"] = prompt
        path = "/openai/v1/chat/completions" if chat else "/openai/v1/completions"
        try:
            with self.http.stream(
                "POST", path, json=body, timeout=httpx.Timeout(self.http.timeout.connect, read=None)
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    try:
                        err = r.json()
                    except ValueError:
                        err = {"error": r.text[:500]}
                    raise ApiError(r.status_code, err if isinstance(err, dict) else {"error": str(err)})
                version = int(r.headers.get("x-model-version", 0))
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        raise ApiError(500, event["error"] if isinstance(event["error"], dict) else event)
                    choice = event["choices"][0]
                    text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    yield TextPiece(text or "", choice.get("finish_reason"), version)
        except httpx.TransportError as e:
            raise ApiError(503, {"error": f"cannot reach {self.url}: {e}", "code": "unreachable"}) from None

    def stream_text(self, model: str, on_text: Callable[[str], None], **ask: Any) -> tuple[str, str | None, float]:
        """``generate`` with each piece handed to ``on_text`` as it comes (the CLI and the TUI show it);
        returns the whole text, the finish reason and the pieces per second after the first."""
        import time

        parts: list[str] = []
        finish, first = None, None
        for piece in self.generate(model, **ask):
            if piece.text:
                first = first or time.perf_counter()
                parts.append(piece.text)
                on_text(piece.text)
            finish = piece.finish or finish
        rate = (len(parts) - 1) / (time.perf_counter() - first) if first and len(parts) > 1 else 0.0
        return "".join(parts), finish, rate

    def infer(
        self,
        name: str,
        inputs: dict[str, Any],
        ref: str | int | None = None,
        outputs: list[str] | None = None,
        *,
        binary: bool = True,
        request_id: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> InferResult:
        """Open Inference Protocol infer with numpy tensors (binary tensor extension by default)."""
        from .protocols import oip

        body, headers = oip.encode_request(inputs, outputs, binary=binary, request_id=request_id, parameters=parameters)
        path = f"/v2/models/{name}" + (f"/versions/{ref}" if ref is not None else "") + "/infer"
        r = self.request("POST", path, content=body, headers=headers, idempotent=True)
        meta, arrays = oip.decode_response(r.content, r.headers.get(oip.HEADER))
        return InferResult(
            arrays, name, int(meta["model_version"]), meta.get("id"), self._timing(r.headers.get("server-timing"))
        )

    def model_metadata(self, name: str, ref: str | int | None = None) -> dict[str, Any]:
        """OIP model metadata: platform, versions, inputs and outputs with datatype and shape."""
        return self._json("GET", f"/v2/models/{name}" + (f"/versions/{ref}" if ref is not None else ""))

    # ------------------------------------------------------------ metrics
    def metrics_overview(self, window: str = "1h") -> Overview:
        """Every model's requests, errors, error rate and p95 over the window."""
        return Overview.model_validate(self._json("GET", "/registry/metrics", params={"window": window}))

    def metrics(
        self,
        name: str,
        window: str = "1h",
        step: str | None = None,
        ref: str | int | None = None,
        by_version: bool = False,
    ) -> ModelMetrics:
        """Time series for a model (or one version/alias with ``ref``); ``by_version`` adds each version's."""
        params: dict[str, Any] = {"window": window, "by_version": str(by_version).lower()}
        if step:
            params["step"] = step
        if ref is not None:
            params["ref"] = str(ref)
        return ModelMetrics.model_validate(self._json("GET", f"/registry/metrics/models/{name}", params=params))

    def feedback(self, name: str, items: list[dict[str, Any]], ref: str | int | None = None) -> FeedbackResult:
        """Ground truth for earlier predictions: items of {prediction, label} or {correct} and/or {score}."""
        body: dict[str, Any] = {"items": items}
        if ref is not None:
            body["ref"] = str(ref)
        return FeedbackResult.model_validate(self._json("POST", f"/registry/models/{name}/feedback", json=body))


def _canary_change(**fields: Any) -> CanaryChange:
    return CanaryChange(**{k: v for k, v in fields.items() if v is not None})


def _change_key() -> dict[str, str]:
    """Names one change, so the server recognises this call's retries (see ``request``)."""
    return {"Idempotency-Key": uuid.uuid4().hex}


def _retry_after(r: httpx.Response) -> float | None:
    try:
        return min(BACKOFF_CAP, max(0.0, float(r.headers["Retry-After"])))
    except (KeyError, ValueError):
        return None


@dataclass
class TextPiece:
    """A piece of streamed text; ``finish`` ("stop", "length") on the last one."""

    text: str
    finish: str | None
    version: int


@dataclass
class Prediction:
    predictions: list[Any]
    model: str
    version: int
    server_timing: dict[str, float]  # milliseconds by phase: fetch, preprocess, inference, ...


@dataclass
class InferResult:
    outputs: dict[str, Any]  # name -> numpy array
    model: str
    version: int
    id: str | None
    server_timing: dict[str, float]
