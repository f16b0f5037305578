"""The HTTP client the CLI and the TUI use to reach any modelbay server."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx

from .errors import ModelbayError
from .manifest import Manifest, VersionMetadata
from .metrics.service import FeedbackResult, ModelMetrics, Overview
from .schemas import (
    AliasList,
    AliasSet,
    AliasState,
    AuditList,
    AuditRecord,
    Deleted,
    FileDecl,
    KeyCreate,
    KeyInfo,
    KeyList,
    ModelDetail,
    ModelList,
    ModelSummary,
    NewKey,
    RegisterRequest,
    Resolution,
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


class ApiError(ModelbayError):
    """An error answer from the server, with its status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("error") or body), **{k: v for k, v in body.items() if k != "error"})
        self.status = status
        self.code = str(body.get("code", "error"))


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
    ) -> None:
        from .settings import Settings

        settings = Settings.from_env()
        self.url = (url or settings.url).rstrip("/")
        self.api_key = api_key if api_key is not None else settings.api_key
        if self.api_key is None:
            from .auth.credentials import load_key

            self.api_key = load_key(self.url, settings.credentials_file)
        # x-api-key too: API Gateway usage plans meter that header (same value, see infra/README.md)
        headers = {"Authorization": f"Bearer {self.api_key}", "x-api-key": self.api_key} if self.api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise ApiError(503, {"error": f"cannot reach {self.url}: {e}", "code": "unreachable"}) from None
        if r.status_code >= 400:
            try:
                body = r.json()
                if not isinstance(body, dict):
                    body = {"error": str(body)}
            except ValueError:
                body = {"error": r.text[:500] or r.reason_phrase}
            raise ApiError(r.status_code, body)
        return r

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
        return AliasState.model_validate(self._json("PUT", f"/registry/models/{name}/aliases/{alias}", json=body))

    def delete_alias(self, name: str, alias: str) -> AliasState:
        return AliasState.model_validate(self._json("DELETE", f"/registry/models/{name}/aliases/{alias}"))

    def alias_history(self, name: str, alias: str) -> AliasState:
        return AliasState.model_validate(self._json("GET", f"/registry/models/{name}/aliases/{alias}/history"))

    def rollback(self, name: str, alias: str) -> AliasState:
        return AliasState.model_validate(self._json("POST", f"/registry/models/{name}/aliases/{alias}/rollback"))

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
        up = UploadSession.model_validate(
            self._json(
                "POST", f"/registry/models/{name}/uploads", json=UploadRequest.model_construct(files=decl).model_dump()
            )
        )
        total = sum(d.size for d in decl.values())
        sent = [0]
        parts: dict[str, list[str]] = {}
        for f, target in up.targets.items():
            if target.multipart_id:
                parts[f] = self._put_parts(files[f], target, sent, total, progress)
            elif target.url:
                self._put(
                    target.url, target.headers, _chunks(files[f], 0, decl[f].size, sent, total, progress), decl[f].size
                )
        # bodies are built unvalidated: the server is the one judge, and its 400 says what is wrong
        body = RegisterRequest.model_construct(
            upload_id=up.upload_id, aliases=list(aliases), metadata=metadata or VersionMetadata(), parts=parts or None
        )
        return Manifest.model_validate(
            self._json("POST", f"/registry/models/{name}/versions", json=body.model_dump(mode="json"), timeout=600)
        )

    def _put(self, url: str, headers: dict[str, str], content: Iterator[bytes], size: int) -> httpx.Response:
        # Presigned URLs must not carry our API key: a fresh request, not self.http.
        own = url.startswith(self.url)
        hdrs = {**headers, "Content-Length": str(size)}
        if own and self.api_key:
            hdrs["Authorization"] = f"Bearer {self.api_key}"
            hdrs["x-api-key"] = self.api_key
        try:
            r = httpx.put(url, content=content, headers=hdrs, timeout=600)
        except httpx.TransportError as e:
            raise ApiError(503, {"error": f"upload failed: {e}", "code": "unreachable"}) from None
        if r.status_code >= 300:
            raise ApiError(r.status_code, {"error": f"upload rejected: {r.text[:300]}", "code": "upload_failed"})
        return r

    def _put_parts(
        self, path: Path, target: UploadTarget, sent: list[int], total: int, progress: Progress | None
    ) -> list[str]:
        size = path.stat().st_size
        step = target.part_size or size
        etags = []
        for part in target.parts:
            start = (part.part_number - 1) * step
            length = min(step, size - start)
            r = self._put(part.url, {}, _chunks(path, start, length, sent, total, progress), length)
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
        r = self.request("POST", path, json=body)
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
        r = self.request("POST", path, content=body, headers=headers)
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
