"""The registry service: versions, aliases and uploads for one tenant.

Transport-free: the HTTP routes, the Lambda handlers, the CLI and the TUI all
call this. Its only concurrency tools are the store's conditional writes:

* a version number is reserved by creating ``<v>/.claim`` with If-None-Match,
  so concurrent registrations get distinct numbers and claims are never reused;
* ``manifest.json`` is written last, with If-None-Match: a version is visible
  only when all its files are there, and a failed upload never shows;
* an alias document (current version + whole history) changes only by
  compare-and-swap on its etag, so no alias change is ever lost.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidModel,
    InvalidName,
    NotFound,
    PreconditionFailed,
    TooLarge,
)
from .layout import (
    CLAIM,
    MANIFEST,
    MODEL_FILE,
    TOMBSTONE,
    Layout,
    check_alias,
    check_file_name,
    check_name,
    check_version,
)
from .manifest import FileInfo, Manifest, VersionMetadata
from .schemas import (
    AliasAction,
    AliasChange,
    AliasState,
    FileDecl,
    ModelSummary,
    Resolution,
    UploadSession,
    UploadTarget,
)
from .settings import Limits
from .storage import ObjectStore, sha256_file

log = logging.getLogger("modelbay.registry")
HISTORY_LIMIT = 500
# What a bare model name means: this alias when it is set, else the latest version.
DEFAULT_ALIAS = "production"


class _Any:
    """The default of ``set_alias(expected=...)``: change whatever the alias points at now."""


_ANY = _Any()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True).encode()


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def rollback_target(history: list[AliasChange]) -> int | None:
    """The version a rollback would restore: undo the latest change not itself undone (None: nothing to undo).

    Public so that a UI can show "from -> to" before asking.
    """
    skip = 0
    for entry in reversed(history):
        if entry["action"] in ("rollback", "revert"):
            skip += 1
        elif skip:
            skip -= 1
        else:
            return entry["from"]
    return None


class Registry:
    def __init__(self, store: ObjectStore, tenant: str = "default", limits: Limits | None = None) -> None:
        self.store = store
        self.layout = Layout(tenant)
        self.tenant = tenant
        self.limits = limits or Limits()

    # ------------------------------------------------------------------ reads
    def _scan(self, name: str | None = None) -> dict[str, dict[int, dict[str, float]]]:
        """{model: {version: {file: last_modified}}} from one listing."""
        prefix = self.layout.model(name) if name else self.layout.models
        out: dict[str, dict[int, dict[str, float]]] = {}
        n = len(self.layout.models)
        for info in self.store.list(prefix):
            parts = info.key[n:].split("/")
            if len(parts) != 3 or not parts[1].isdigit():
                continue
            out.setdefault(parts[0], {}).setdefault(int(parts[1]), {})[parts[2]] = info.last_modified
        return out

    @staticmethod
    def _visible(files: dict[str, float]) -> bool:
        return MANIFEST in files and TOMBSTONE not in files

    def version_numbers(self, name: str) -> list[int]:
        versions = self._scan(name).get(name, {})
        return sorted(v for v, files in versions.items() if self._visible(files))

    def list_models(self) -> list[ModelSummary]:
        out: list[ModelSummary] = []
        for name, versions in sorted(self._scan().items()):
            visible = sorted(v for v, f in versions.items() if self._visible(f))
            if not visible:
                continue
            out.append(
                ModelSummary(
                    name=name,
                    latest_version=visible[-1],
                    version_count=len(visible),
                    aliases=self.aliases(name),
                    updated_at=versions[visible[-1]][MANIFEST],
                )
            )
        return out

    def get_version(self, name: str, version: int | str) -> Manifest:
        v = check_version(version)
        try:
            data, _ = self.store.get_bytes(self.layout.file(name, v, MANIFEST))
        except NotFound:
            raise NotFound(f"model {name!r} has no version {v}", model=name, version=v) from None
        if self.store.head(self.layout.file(name, v, TOMBSTONE)) is not None:
            raise NotFound(f"model {name!r} version {v} was deleted", model=name, version=v)
        return Manifest.model_validate_json(data)

    def list_versions(self, name: str) -> list[Manifest]:
        versions = self.version_numbers(name)
        if not versions:
            raise NotFound(f"no model named {name!r}", model=name)
        out: list[Manifest] = []
        for v in versions:
            try:
                out.append(self.get_version(name, v))
            except NotFound:  # deleted between the listing and the read
                continue
        return out

    def locate(self, name: str, ref: str | int | None = None) -> Resolution:
        """The one rule for what a reference names, without reading the manifest.

        A version number names itself (whether it exists is the manifest read's business);
        an alias names its version; no ref (or "") names ``production`` when set, else the
        latest version. Every reader (the engine, the routes, the CLI and TUI through
        ``GET /registry/models/{name}/resolve``) goes through here.
        """
        check_name(name, "model name")
        if ref is None or ref == "":
            state = self._read_alias(name, DEFAULT_ALIAS)[0]
            if state is not None and state.version is not None:
                return Resolution(model=name, ref=None, version=state.version, alias=DEFAULT_ALIAS)
            versions = self.version_numbers(name)
            if not versions:
                raise NotFound(f"no model named {name!r}", model=name)
            return Resolution(model=name, ref=None, version=versions[-1], alias=None)
        if isinstance(ref, int) or ref.isdigit():
            v = check_version(ref)
            return Resolution(model=name, ref=str(v), version=v, alias=None)
        alias = check_name(ref, "alias")
        state = self._read_alias(name, alias)[0]
        if state is None or state.version is None:
            if not self.version_numbers(name):
                raise NotFound(f"no model named {name!r}", model=name)
            raise NotFound(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)
        return Resolution(model=name, ref=alias, version=state.version, alias=alias)

    def resolve(self, name: str, ref: str | int | None = None) -> Manifest:
        """The manifest a reference names (see ``locate``)."""
        return self.get_version(name, self.locate(name, ref).version)

    def resolution(self, name: str, ref: str | int | None = None) -> Resolution:
        """``locate`` with the manifest: what ``GET .../resolve`` answers."""
        found = self.locate(name, ref)
        return found.model_copy(update={"manifest": self.get_version(name, found.version)})

    def alias_version(self, name: str, alias: str) -> int:
        state = self._read_alias(name, alias)[0]
        if state is None or state.version is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)
        return state.version

    # -------------------------------------------------------------- aliases
    def _read_alias(self, name: str, alias: str) -> tuple[AliasState | None, str | None]:
        try:
            data, etag = self.store.get_bytes(self.layout.alias(name, alias))
        except NotFound:
            return None, None
        return AliasState.model_validate_json(data), etag

    def aliases(self, name: str) -> dict[str, int]:
        out: dict[str, int] = {}
        prefix = self.layout.aliases(name)
        for info in self.store.list(prefix):
            alias = info.key[len(prefix) :].removesuffix(".json")
            state = self._read_alias(name, alias)[0]
            if state and state.version is not None:
                out[alias] = state.version
        return out

    def alias_state(self, name: str, alias: str) -> AliasState:
        state = self._read_alias(name, alias)[0]
        if state is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)
        return state

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int | None,
        *,
        expected: int | _Any | None = _ANY,
        actor: str | None = None,
        action: AliasAction = "set",
    ) -> AliasState:
        """Point ``alias`` at ``version`` (None deletes it) by compare-and-swap.

        ``expected`` (a version or None) makes the change conditional: a 412 if
        the alias moved meanwhile. Without it, lost races are retried.
        """
        check_alias(alias)
        if version is not None:
            version = check_version(version)
            self.get_version(name, version)  # must be visible now
        for attempt in range(50):
            state, etag = self._read_alias(name, alias)
            current = state.version if state else None
            if not isinstance(expected, _Any) and current != expected:
                raise PreconditionFailed(
                    f"alias {alias!r} of {name!r} points at {current}, not {expected}",
                    current=current,
                    expected=expected,
                )
            if action == "delete" and current is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)
            entry: AliasChange = {"at": now_iso(), "by": actor, "from": current, "to": version, "action": action}
            history = ((state.history if state else []) + [entry])[-HISTORY_LIMIT:]
            new = AliasState(
                model=name, alias=alias, version=version, updated_at=entry["at"], updated_by=actor, history=history
            )
            try:
                self.store.put_bytes(
                    self.layout.alias(name, alias),
                    _dumps(new.model_dump(mode="json")),
                    if_match=etag,
                    if_none_match=etag is None,
                )
                break
            except PreconditionFailed:
                if not isinstance(expected, _Any):
                    raise
                time.sleep(min(0.002 * 2**attempt, 0.1) * secrets.randbelow(100) / 100)
        else:
            raise Conflict(f"alias {alias!r} of {name!r} is changing too fast; try again")
        # A delete of this version may have raced us: it writes a tombstone, then
        # checks aliases; we wrote the alias, then check the tombstone. One sees the other.
        if version is not None and self.store.head(self.layout.file(name, version, TOMBSTONE)):
            self.set_alias(name, alias, current, actor=actor, action="revert")
            raise Conflict(f"version {version} of {name!r} is being deleted")
        return new

    def delete_alias(self, name: str, alias: str, *, actor: str | None = None) -> AliasState:
        return self.set_alias(name, alias, None, actor=actor, action="delete")

    def rollback(self, name: str, alias: str, *, actor: str | None = None) -> AliasState:
        """Undo the latest change that is not itself undone: repeated rollbacks walk back."""
        state = self.alias_state(name, alias)
        target = rollback_target(state.history)
        if target is None:
            raise Conflict(
                f"alias {alias!r} of {name!r} has no earlier version to roll back to", model=name, alias=alias
            )
        try:
            self.get_version(name, target)
        except NotFound:
            raise Conflict(f"cannot roll back {alias!r} to version {target}: it was deleted") from None
        return self.set_alias(name, alias, target, expected=state.version, actor=actor, action="rollback")

    # ------------------------------------------------------------ deletion
    def delete_version(self, name: str, version: int | str, *, actor: str | None = None) -> None:
        v = check_version(version)
        self.get_version(name, v)
        if pointing := [a for a, av in self.aliases(name).items() if av == v]:
            raise Conflict(
                f"version {v} of {name!r} is aliased by {', '.join(sorted(pointing))}; move those aliases first",
                aliases=sorted(pointing),
            )
        tomb = self.layout.file(name, v, TOMBSTONE)
        try:
            self.store.put_bytes(tomb, _dumps({"at": now_iso(), "by": actor}), if_none_match=True)
        except PreconditionFailed:
            raise Conflict(f"version {v} of {name!r} is already being deleted") from None
        if pointing := [a for a, av in self.aliases(name).items() if av == v]:
            self.store.delete(tomb)
            raise Conflict(
                f"version {v} of {name!r} was just aliased by {', '.join(pointing)}", aliases=sorted(pointing)
            )
        # Claim and tombstone stay: version numbers are never reused.
        prefix = self.layout.version(name, v)
        self.store.delete(prefix + MANIFEST)
        for info in list(self.store.list(prefix)):
            if info.key[len(prefix) :] not in (CLAIM, TOMBSTONE):
                self.store.delete(info.key)

    # ------------------------------------------------------------- publishing
    def _claim_version(self, name: str, actor: str | None) -> int:
        numbers = self._scan(name).get(name, {})
        v = max(numbers, default=0) + 1
        body = _dumps({"at": now_iso(), "by": actor})
        for _ in range(10_000):
            try:
                self.store.put_bytes(self.layout.file(name, v, CLAIM), body, if_none_match=True)
                return v
            except PreconditionFailed:
                v += 1
        raise Conflict(f"could not allocate a version for {name!r}")

    def register_version(
        self,
        name: str,
        model_path: Path,
        metadata: VersionMetadata | None = None,
        side_files: dict[str, Path] | None = None,
        aliases: Iterable[str] = (),
        *,
        actor: str | None = None,
    ) -> Manifest:
        """Validate local files and publish them as the next version."""
        check_name(name, "model name")
        side_files = dict(side_files or {})
        self._check_side_files({f: Path(p).stat().st_size for f, p in side_files.items()})
        return self._publish(
            name, Path(model_path), side_files, metadata or VersionMetadata(), list(aliases), actor, staged=None
        )

    def _check_side_files(self, sizes: dict[str, int]) -> None:
        if len(sizes) > self.limits.max_side_files:
            raise BadRequest(f"at most {self.limits.max_side_files} side files per version")
        for f, size in sizes.items():
            check_file_name(f)
            if size > self.limits.max_side_file_bytes:
                raise TooLarge(f"side file {f!r} is {size} bytes; the limit is {self.limits.max_side_file_bytes}")

    def _publish(
        self,
        name: str,
        model_path: Path,
        side_files: dict[str, Path],
        metadata: VersionMetadata,
        aliases: list[str],
        actor: str | None,
        staged: dict[str, str] | None,
    ) -> Manifest:
        # validation imports onnx (~0.1-0.4 s): only registering needs it, not a server's start or its predictions
        from .validation import check_metadata, inspect_onnx

        for a in aliases:
            check_alias(a)
        sig = inspect_onnx(model_path, self.limits.max_model_bytes)
        files = {f: FileInfo(sha256=sha256_file(p), size=p.stat().st_size) for f, p in side_files.items()}
        check_metadata(metadata, sig, set(files))
        model_sha = sha256_file(model_path)
        v = self._claim_version(name, actor)
        manifest = Manifest(
            **metadata.model_dump(),
            name=name,
            version=v,
            sha256=model_sha,
            size=model_path.stat().st_size,
            created_at=now_iso(),
            created_by=actor,
            ir_version=sig.ir_version,
            opset=sig.opset,
            producer=sig.producer,
            inputs=sig.inputs,
            outputs=sig.outputs,
            files=files,
        )
        written: list[str] = []
        try:
            for fname, path, sha in [
                (MODEL_FILE, model_path, model_sha),
                *((f, p, files[f].sha256) for f, p in side_files.items()),
            ]:
                key = self.layout.file(name, v, fname)
                written.append(key)
                if staged and fname in staged:
                    self.store.copy(staged[fname], key, sha256=sha)
                else:
                    self.store.put_file(key, path)
            key = self.layout.file(name, v, MANIFEST)
            written.append(key)
            self.store.put_bytes(key, manifest.model_dump_json(indent=1).encode(), if_none_match=True)
        except BaseException:
            for key in written:
                try:
                    self.store.delete(key)
                except Exception as e:
                    log.warning("could not remove %s after a failed publish: %s", key, e)
            raise
        for alias in aliases:
            self.set_alias(name, alias, v, actor=actor)
        return manifest

    # --------------------------------------------------------------- uploads
    def create_upload(
        self, name: str, files: dict[str, FileDecl] | dict[str, dict[str, Any]], *, actor: str | None = None
    ) -> UploadSession:
        """Reserve a staging area; ``files`` maps file name to its size and sha256.

        ``model.onnx`` is required. The returned targets are presigned S3 URLs
        (multipart for large files) or, on the local store, none: the server
        then serves its own upload URL guarded by the session token.
        """
        check_name(name, "model name")
        if MODEL_FILE not in files:
            raise BadRequest("an upload needs a 'model.onnx' file")
        sizes: dict[str, int] = {}
        decls: dict[str, FileDecl] = {}
        for f, spec in files.items():
            raw = spec.model_dump() if isinstance(spec, FileDecl) else spec
            size, sha = raw.get("size"), raw.get("sha256")
            if not isinstance(size, int) or size < 1:
                raise BadRequest(f"file {f!r}: size must be a positive integer")
            if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise BadRequest(f"file {f!r}: sha256 must be 64 lowercase hex digits")
            sizes[f] = size
            decls[f] = FileDecl(size=size, sha256=sha)
        if sizes[MODEL_FILE] > self.limits.max_model_bytes:
            raise TooLarge(
                f"model is {sizes[MODEL_FILE]} bytes; the limit is {self.limits.max_model_bytes}",
                limit=self.limits.max_model_bytes,
            )
        self._check_side_files({f: s for f, s in sizes.items() if f != MODEL_FILE})
        upload_id = secrets.token_hex(12)
        ttl = self.limits.upload_ttl_seconds
        targets: dict[str, UploadTarget] = {}
        multipart: dict[str, str] = {}
        for f, size in sizes.items():
            t = self.store.presign_put(self.layout.upload(upload_id) + "files/" + f, size=size, expires=ttl)
            if t is not None:
                fields = asdict(t)
                fields.pop("key")
                targets[f] = UploadTarget.model_validate(fields)
                if t.multipart_id:
                    multipart[f] = t.multipart_id
        token = None if targets else secrets.token_urlsafe(24)
        session = UploadSession(
            upload_id=upload_id, name=name, expires_at=time.time() + ttl, files=decls, targets=targets, token=token
        )
        record = {
            "upload_id": upload_id,
            "name": name,
            "expires_at": session.expires_at,
            "files": {f: d.model_dump() for f, d in decls.items()},
            "multipart": multipart,
            "token_sha256": _sha(token) if token else None,
            "created_by": actor,
            "created_at": now_iso(),
        }
        self.store.put_bytes(self.layout.upload(upload_id) + "upload.json", _dumps(record), if_none_match=True)
        return session

    def _upload_record(self, upload_id: str) -> dict[str, Any]:
        if not (isinstance(upload_id, str) and len(upload_id) == 24 and upload_id.isalnum()):
            raise NotFound(f"no upload {upload_id!r}")
        try:
            data, _ = self.store.get_bytes(self.layout.upload(upload_id) + "upload.json")
        except NotFound:
            raise NotFound(f"no upload {upload_id!r} (expired or already registered)") from None
        record: dict[str, Any] = json.loads(data)
        if record["expires_at"] < time.time():
            raise NotFound(f"upload {upload_id!r} expired")
        return record

    def upload_target(self, upload_id: str, file: str, token: str) -> int:
        """The declared size of ``file`` in a local upload, once its id, token and name check out.

        The local upload URL asks this before it reads a byte of the body: a
        caller without the session's token cannot make the server store anything.
        """
        record = self._upload_record(upload_id)
        if not record.get("token_sha256") or not hmac.compare_digest(record["token_sha256"], _sha(token or "")):
            raise Forbidden("bad upload token")
        if file not in record["files"]:
            raise BadRequest(f"file {file!r} is not part of upload {upload_id}")
        size: int = record["files"][file]["size"]
        return size

    def receive_upload(self, upload_id: str, file: str, token: str, source_path: Path) -> None:
        """The local server's stand-in for a presigned PUT."""
        declared = self.upload_target(upload_id, file, token)
        size = source_path.stat().st_size
        if size != declared:
            raise BadRequest(f"{file}: received {size} bytes, declared {declared}")
        self.store.put_file(self.layout.upload(upload_id) + "files/" + file, source_path)

    def register_upload(
        self,
        name: str,
        upload_id: str,
        metadata: VersionMetadata | None = None,
        aliases: Iterable[str] = (),
        *,
        parts: dict[str, list[str]] | None = None,
        actor: str | None = None,
    ) -> Manifest:
        """Publish a completed upload: check each file's declared sha256, then validate and publish."""
        record = self._upload_record(upload_id)
        if record["name"] != name:
            raise BadRequest(f"upload {upload_id} was created for model {record['name']!r}, not {name!r}")
        base = self.layout.upload(upload_id) + "files/"
        for f, mp_id in record.get("multipart", {}).items():
            if self.store.head(base + f) is None:
                if not parts or f not in parts:
                    raise BadRequest(f"{f} was a multipart upload: send the ETags of its parts")
                self.store.complete_multipart(base + f, mp_id, parts[f])
        tmp = Path(tempfile.mkdtemp(prefix="modelbay-register-"))
        try:
            paths: dict[str, Path] = {}
            for f, spec in record["files"].items():
                try:
                    self.store.get_file(base + f, tmp / f, expected_sha256=spec["sha256"])
                except NotFound:
                    raise BadRequest(f"{f} was never uploaded to upload {upload_id}") from None
                except IntegrityError:
                    raise InvalidModel(
                        f"{f}: the uploaded bytes do not match the declared sha256", code="sha256_mismatch"
                    ) from None
                paths[f] = tmp / f
            model = paths.pop(MODEL_FILE)
            manifest = self._publish(
                name,
                model,
                paths,
                metadata or VersionMetadata(),
                list(aliases),
                actor,
                staged={f: base + f for f in record["files"]},
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.store.delete_prefix(self.layout.upload(upload_id))
        return manifest

    # ----------------------------------------------------------------- sweep
    def sweep(self, *, older_than: float | None = None) -> dict[str, int]:
        """Remove expired uploads and the files of abandoned (never-published) versions.

        S3 does this by lifecycle rule too; the local store relies on this sweep.
        """
        cutoff = time.time() - (older_than if older_than is not None else self.limits.upload_ttl_seconds)
        removed = {"uploads": 0, "abandoned_files": 0}
        uploads: dict[str, float] = {}
        for info in self.store.list(self.layout.uploads):
            uid = info.key[len(self.layout.uploads) :].split("/")[0]
            uploads[uid] = max(uploads.get(uid, 0), info.last_modified)
        for uid, last in uploads.items():
            if last < cutoff:
                removed["uploads"] += self.store.delete_prefix(self.layout.upload(uid)) and 1
        for name, versions in self._scan().items():
            for v, files in versions.items():
                if MANIFEST in files or files.get(CLAIM, time.time()) >= cutoff:
                    continue
                for f in files:
                    if f not in (CLAIM, TOMBSTONE):
                        self.store.delete(self.layout.file(name, v, f))
                        removed["abandoned_files"] += 1
        return removed


def sweep_all(store: ObjectStore, limits: Limits | None = None) -> dict[str, int]:
    """Sweep every tenant of a store (the local server runs this periodically)."""
    tenants = {info.key.split("/")[1] for info in store.list("tenants/") if info.key.count("/") >= 2}
    total = {"uploads": 0, "abandoned_files": 0}
    for t in sorted(tenants):
        try:
            check_name(t, "tenant")
        except InvalidName:  # not a tenant this code wrote
            continue
        for k, v in Registry(store, t, limits).sweep().items():
            total[k] += v
    return total
