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

import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from .changes import announce
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
    Canary,
    FileDecl,
    GuardRails,
    ModelSummary,
    Resolution,
    Shadow,
    UploadSession,
    UploadTarget,
)
from .settings import Limits
from .storage import ObjectStore, sha256_file

if TYPE_CHECKING:
    from .validation import Signature

log = logging.getLogger("modelbay.registry")
HISTORY_LIMIT = 500
# uploads/<id>/version.json: the version a registration of the upload claimed (see register_upload)
UPLOAD_VERSION = "version.json"
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

    Changes that left the stable version where it was (a canary's start, ramp or abort) are passed over,
    except a running canary's latest: rolling that back means its stable version alone.
    Public so that a UI can show "from -> to" before asking.
    """
    skip = 0
    for i, entry in enumerate(reversed(history)):
        if entry["from"] == entry["to"]:
            if i == 0 and entry["action"] in ("canary", "ramp"):
                return entry["from"]
            continue
        if entry["action"] in ("rollback", "revert"):
            skip += 1
        elif skip:
            skip -= 1
        else:
            return entry["from"]
    return None


class _StagedGone(BadRequest):
    """A staged file is not (or no longer) there: never uploaded, or another registration finished."""


def _new_id() -> str:
    return secrets.token_hex(8)


# callers' ids (the HTTP header) are at most 64 characters; ids derived from them add a suffix
CHANGE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,159}")


def check_change_id(change_id: str) -> str:
    """A caller's name for one change (the HTTP ``Idempotency-Key``), so a retry is recognised."""
    if not isinstance(change_id, str) or not CHANGE_ID_RE.fullmatch(change_id):
        raise BadRequest(
            "invalid change id (Idempotency-Key): use letters, digits, '.', '_', ':' or '-'",
            field="Idempotency-Key",
        )
    return change_id


def _applied(state: AliasState | None, change_id: str) -> TypeGuard[AliasState]:
    """Whether the alias's history already holds this change."""
    return state is not None and any(e.get("id") == change_id for e in state.history)


@dataclass(frozen=True)
class _Next:
    """What an alias change writes: the stable version, the canary, and extra fields of its history entry.
    The shadow stays as it was unless ``shadow`` says otherwise."""

    version: int | None
    canary: Canary | None
    extra: dict[str, Any]
    shadow: Shadow | _Any | None = _ANY


def _followed(state: AliasState, ref: str | None) -> Resolution:
    """What a reference that follows an alias names: its stable version, its canary and its shadow."""
    assert state.version is not None
    return Resolution(
        model=state.model,
        ref=ref,
        version=state.version,
        alias=state.alias,
        canary=state.canary,
        shadow=state.shadow,
    )


def _expect(name: str, alias: str, current: int | None, expected: int | _Any | None) -> None:
    if not isinstance(expected, _Any) and current != expected:
        raise PreconditionFailed(
            f"alias {alias!r} of {name!r} points at {current}, not {expected}", current=current, expected=expected
        )


def _running(name: str, alias: str, state: AliasState | None, expected: int | None) -> tuple[AliasState, Canary]:
    """The alias and its canary, which must be there (and be version ``expected`` when given)."""
    if state is None or state.canary is None:
        raise Conflict(f"alias {alias!r} of {name!r} has no canary", model=name, alias=alias)
    if expected is not None and state.canary.version != expected:
        raise PreconditionFailed(
            f"the canary of {alias!r} is version {state.canary.version}, not {expected}",
            current=state.canary.version,
            expected=expected,
        )
    return state, state.canary


def _why(extra: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return {**extra, "reason": reason} if reason else extra


CANARY_INDEX = "system/canaries/"


def mark_canary(store: ObjectStore, tenant: str, name: str, alias: str) -> None:
    """Note that an alias may carry a canary, so the scheduled check need not read every alias.

    Written before the canary itself; a mark without a canary is removed by the check that finds it so.
    """
    key = f"{CANARY_INDEX}{check_name(tenant, 'tenant')}/{check_name(name, 'model name')}/{check_alias(alias)}"
    with contextlib.suppress(PreconditionFailed):
        store.put_bytes(key, b"{}", if_none_match=True)


@dataclass(frozen=True)
class _Checked:
    """A candidate version's files after validation: what its manifest records."""

    model_path: Path
    sha256: str
    size: int
    sig: Signature
    files: dict[str, FileInfo]
    metadata: VersionMetadata

    def manifest(self, name: str, version: int, actor: str | None) -> Manifest:
        return Manifest(
            **self.metadata.model_dump(),
            name=name,
            version=version,
            sha256=self.sha256,
            size=self.size,
            created_at=now_iso(),
            created_by=actor,
            ir_version=self.sig.ir_version,
            opset=self.sig.opset,
            producer=self.sig.producer,
            inputs=self.sig.inputs,
            outputs=self.sig.outputs,
            files=self.files,
        )


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
        an alias names its version (and its canary, if it has one: which of the two serves a
        request is ``modelbay.routing``'s, applied by the engine); no ref (or "") names
        ``production`` when set, else the latest version. Every reader (the engine, the routes, the CLI and TUI through
        ``GET /registry/models/{name}/resolve``) goes through here.
        """
        check_name(name, "model name")
        if ref is None or ref == "":
            state = self._read_alias(name, DEFAULT_ALIAS)[0]
            if state is not None and state.version is not None:
                return _followed(state, None)
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
        return _followed(state, alias)

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

    def alias_states(self, name: str) -> dict[str, AliasState]:
        """Every alias of a model that points somewhere, with its canary."""
        out: dict[str, AliasState] = {}
        prefix = self.layout.aliases(name)
        for info in self.store.list(prefix):
            alias = info.key[len(prefix) :].removesuffix(".json")
            state = self._read_alias(name, alias)[0]
            if state and state.version is not None:
                out[alias] = state
        return out

    def aliases(self, name: str) -> dict[str, int]:
        """alias -> its stable version (a canary's share is in ``alias_states``)."""
        return {a: s.version for a, s in self.alias_states(name).items() if s.version is not None}

    def pinned(self, name: str) -> dict[str, set[int]]:
        """alias -> the versions it sends traffic to (its stable version, its canary's and its shadow's)."""
        return {
            a: {
                v
                for v in (s.version, s.canary.version if s.canary else None, s.shadow.version if s.shadow else None)
                if v is not None
            }
            for a, s in self.alias_states(name).items()
        }

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
        change_id: str | None = None,
    ) -> AliasState:
        """Point ``alias`` at ``version`` (None deletes it) by compare-and-swap; a canary on it ends.

        ``expected`` (a version or None) makes the change conditional: a 412 if
        the alias moved meanwhile. Without it, lost races are retried.
        ``change_id`` names the change in the history: a change whose id is
        already there was applied (by an earlier attempt, or by a request now
        retried), and is answered as done rather than made twice.
        """
        check_alias(alias)
        if version is not None:
            version = check_version(version)

        def plan(state: AliasState | None) -> _Next:
            current = state.version if state else None
            _expect(name, alias, current, expected)
            if action == "delete" and current is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)
            return _Next(version, None, {"canary": None} if state and state.canary else {})

        return self._change(name, alias, change_id, actor, action, plan, check=version)

    # ------------------------------------------------------------- canaries
    def start_canary(
        self,
        name: str,
        alias: str,
        version: int,
        percent: float,
        *,
        guard: GuardRails | None = None,
        steps: Iterable[float] = (),
        expected: int | _Any | None = _ANY,
        actor: str | None = None,
        change_id: str | None = None,
    ) -> AliasState:
        """Send ``percent`` of the alias's traffic to ``version``; the rest stays on the alias's version.

        One canary per alias at a time. ``steps``: the shares a ramp climbs through while ``guard`` holds.
        """
        check_alias(alias)
        version = check_version(version)
        if not 0 < percent < 100:
            raise BadRequest("percent must be between 0 and 100 (exclusive)", field="percent")
        ramp = sorted({float(p) for p in steps})
        if any(not percent < p <= 100 for p in ramp):
            raise BadRequest(f"ramp steps must be above {percent} and at most 100", field="steps")
        guard = None if guard is None or guard.empty else guard
        change_id = check_change_id(change_id) if change_id else _new_id()
        mark_canary(self.store, self.tenant, name, alias)  # a hint for the scheduled check, written first

        def plan(state: AliasState | None) -> _Next:
            if state is None or state.version is None:
                raise NotFound(f"model {name!r} has no alias {alias!r} to split", model=name, alias=alias)
            _expect(name, alias, state.version, expected)
            if state.canary is not None:
                raise Conflict(
                    f"alias {alias!r} of {name!r} already has a canary (version {state.canary.version}): "
                    "promote or abort it first",
                    canary=state.canary.version,
                )
            if version == state.version:
                raise BadRequest(f"version {version} is the alias's stable version already", field="version")
            now = time.time()
            canary = Canary(
                version=version, percent=percent, id=change_id, started_at=now, since=now, guard=guard, steps=ramp
            )
            return _Next(state.version, canary, {"canary": {"version": version, "percent": percent}})

        return self._change(name, alias, change_id, actor, "canary", plan, check=version)

    def ramp_canary(
        self,
        name: str,
        alias: str,
        percent: float,
        *,
        expected_canary: int | None = None,
        actor: str | None = None,
        change_id: str | None = None,
        reason: str | None = None,
    ) -> AliasState:
        """Change the canary's share; 100 promotes it."""
        if percent >= 100:
            return self.promote_canary(
                name, alias, expected_canary=expected_canary, actor=actor, change_id=change_id, reason=reason
            )
        if not percent > 0:
            raise BadRequest("percent must be above 0", field="percent")

        def plan(state: AliasState | None) -> _Next:
            now, canary = _running(name, alias, state, expected_canary)
            moved = canary.model_copy(update={"percent": percent, "since": time.time()})
            split = {"version": canary.version, "percent": percent}
            return _Next(now.version, moved, _why({"canary": split}, reason))

        return self._change(name, alias, change_id, actor, "ramp", plan)

    def promote_canary(
        self,
        name: str,
        alias: str,
        *,
        expected_canary: int | None = None,
        actor: str | None = None,
        change_id: str | None = None,
        reason: str | None = None,
    ) -> AliasState:
        """All of the alias's traffic to its canary: the canary becomes the stable version."""

        def plan(state: AliasState | None) -> _Next:
            canary = _running(name, alias, state, expected_canary)[1]
            return _Next(canary.version, None, _why({"canary": None}, reason))

        return self._change(name, alias, change_id, actor, "promote", plan, check=expected_canary)

    def abort_canary(
        self,
        name: str,
        alias: str,
        *,
        expected_canary: int | None = None,
        actor: str | None = None,
        change_id: str | None = None,
        reason: str | None = None,
    ) -> AliasState:
        """All of the alias's traffic back to its stable version; ``reason`` goes into the history."""

        def plan(state: AliasState | None) -> _Next:
            now = _running(name, alias, state, expected_canary)[0]
            return _Next(now.version, None, _why({"canary": None}, reason))

        return self._change(name, alias, change_id, actor, "abort", plan)

    def set_shadow(
        self,
        name: str,
        alias: str,
        version: int | None,
        rate: float = 0.0,
        *,
        actor: str | None = None,
        change_id: str | None = None,
    ) -> AliasState:
        """Let ``version`` also run ``rate`` of the alias's requests, answers discarded (None: stop shadowing)."""
        shadow = None
        if version is not None:
            version = check_version(version)
            if not 0 < rate <= 1:
                raise BadRequest("rate must be above 0 and at most 1", field="rate")
            shadow = Shadow(version=version, rate=rate)

        def plan(state: AliasState | None) -> _Next:
            if state is None or state.version is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)
            extra = {"shadow": shadow.model_dump() if shadow else None}
            return _Next(state.version, state.canary, extra, shadow)

        return self._change(name, alias, change_id, actor, "shadow", plan, check=version)

    # ------------------------------------------------------- the alias write
    def _change(
        self,
        name: str,
        alias: str,
        change_id: str | None,
        actor: str | None,
        action: AliasAction,
        plan: Callable[[AliasState | None], _Next],
        *,
        check: int | None = None,
    ) -> AliasState:
        """The one writer of alias documents: ``plan`` turns the state read into the next one (or raises),
        and the result is written by compare-and-swap on the etag, re-planned on a lost race.

        ``check``: a version the change makes reachable: it must be visible now, and a delete racing
        the change is detected afterwards and the change reverted.
        """
        change_id = check_change_id(change_id) if change_id else _new_id()
        state, etag = self._read_alias(name, alias)
        if _applied(state, change_id):
            return state
        if check is not None:
            self.get_version(name, check)  # must be visible now
        for attempt in range(50):
            if attempt:
                state, etag = self._read_alias(name, alias)
                if _applied(state, change_id):
                    return state  # our write landed although its answer said otherwise
            nxt = plan(state)
            entry: AliasChange = {
                "at": now_iso(),
                "by": actor,
                "from": state.version if state else None,
                "to": nxt.version,
                "action": action,
                "id": change_id,
                **nxt.extra,  # type: ignore[typeddict-item]
            }
            history = ((state.history if state else []) + [entry])[-HISTORY_LIMIT:]
            new = AliasState(
                model=name,
                alias=alias,
                version=nxt.version,
                updated_at=entry["at"],
                updated_by=actor,
                history=history,
                canary=nxt.canary,
                shadow=(state.shadow if state else None) if isinstance(nxt.shadow, _Any) else nxt.shadow,
            )
            try:
                self.store.put_bytes(
                    self.layout.alias(name, alias),
                    _dumps(new.model_dump(mode="json")),
                    if_match=etag,
                    if_none_match=etag is None,
                )
                break
            except PreconditionFailed:  # re-read: our own change, a moved alias (CAS: 412), or a retry
                time.sleep(min(0.002 * 2**attempt, 0.1) * secrets.randbelow(100) / 100)
        else:
            raise Conflict(f"alias {alias!r} of {name!r} is changing too fast; try again", retryable=True)
        # A delete of this version may have raced us: it writes a tombstone, then
        # checks aliases; we wrote the alias, then check the tombstone. One sees the other.
        if check is not None and self.store.head(self.layout.file(name, check, TOMBSTONE)):
            before = (state.version, state.canary) if state else (None, None)
            self._change(name, alias, f"{change_id}.revert", actor, "revert", lambda _s: _Next(*before, {}))
            raise Conflict(f"version {check} of {name!r} is being deleted")
        self._changed(new, entry)
        announce(self.store, self.tenant, name)
        return new

    def _changed(self, state: AliasState, entry: AliasChange) -> None:
        """Called once per alias change written (never for a recognised retry): the audit log's hook."""

    def delete_alias(
        self, name: str, alias: str, *, actor: str | None = None, change_id: str | None = None
    ) -> AliasState:
        return self.set_alias(name, alias, None, actor=actor, action="delete", change_id=change_id)

    def rollback(self, name: str, alias: str, *, actor: str | None = None, change_id: str | None = None) -> AliasState:
        """Undo the latest change that is not itself undone: repeated rollbacks walk back.

        A retried rollback (same ``change_id``) is answered as done, not applied twice.
        """
        change_id = check_change_id(change_id) if change_id else _new_id()
        state = self.alias_state(name, alias)
        if _applied(state, change_id):
            return state
        target = rollback_target(state.history)
        if target is None:
            raise Conflict(
                f"alias {alias!r} of {name!r} has no earlier version to roll back to", model=name, alias=alias
            )
        try:
            self.get_version(name, target)
        except NotFound:
            raise Conflict(f"cannot roll back {alias!r} to version {target}: it was deleted") from None
        return self.set_alias(
            name, alias, target, expected=state.version, actor=actor, action="rollback", change_id=change_id
        )

    # ------------------------------------------------------------ deletion
    def _files(self, name: str, v: int) -> dict[str, float]:
        """{file: last_modified} of one version directory, from one listing."""
        prefix = self.layout.version(name, v)
        return {info.key[len(prefix) :]: info.last_modified for info in self.store.list(prefix)}

    def _aliased(self, name: str, v: int) -> list[str]:
        return sorted(a for a, versions in self.pinned(name).items() if v in versions)

    def delete_version(self, name: str, version: int | str, *, actor: str | None = None) -> None:
        """Hide a version (tombstone), then remove its files; the number is never reused.

        Idempotent: a delete that crashed half-way, or whose answer was lost, is
        finished by the next one, which succeeds.
        """
        v = check_version(version)
        files = self._files(name, v)
        tomb = self.layout.file(name, v, TOMBSTONE)
        if TOMBSTONE not in files:
            if MANIFEST not in files:
                raise NotFound(f"model {name!r} has no version {v}", model=name, version=v)
            if pointing := self._aliased(name, v):
                raise Conflict(
                    f"version {v} of {name!r} is aliased by {', '.join(pointing)}; move those aliases first",
                    aliases=pointing,
                )
            # PreconditionFailed: another delete got there first; this one finishes the job with it
            with contextlib.suppress(PreconditionFailed):
                self.store.put_bytes(tomb, _dumps({"at": now_iso(), "by": actor, "id": _new_id()}), if_none_match=True)
        # An alias written before the tombstone is seen here; one written after it sees the
        # tombstone and reverts itself. Either way no alias is left on a removed version.
        if pointing := self._aliased(name, v):
            if self.store.head(self.layout.file(name, v, MANIFEST)) is not None:
                self.store.delete(tomb)  # the version stays, whole
            raise Conflict(
                f"version {v} of {name!r} was just aliased by {', '.join(pointing)}", aliases=pointing, retryable=True
            )
        self._purge(name, v)
        announce(self.store, self.tenant, name)

    def _purge(self, name: str, v: int) -> int:
        """Remove a hidden version's files, manifest first; claim and tombstone stay. Returns how many."""
        prefix = self.layout.version(name, v)
        rest = sorted(f for f in self._files(name, v) if f not in (CLAIM, TOMBSTONE, MANIFEST))
        self.store.delete(prefix + MANIFEST)
        for f in rest:
            self.store.delete(prefix + f)
        return len(rest) + 1

    # ------------------------------------------------------------- publishing
    def _claim_version(self, name: str, actor: str | None, upload_id: str | None = None) -> int:
        numbers = self._scan(name).get(name, {})
        v = max(numbers, default=0) + 1
        # the id makes each claim's bytes unique: a retried claim recognises its own write by them
        body = _dumps({"at": now_iso(), "by": actor, "id": _new_id(), "upload": upload_id})
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
        aliases = [check_alias(a) for a in aliases]
        checked = self._validate(Path(model_path), side_files, metadata or VersionMetadata())
        v = self._claim_version(name, actor)
        manifest = checked.manifest(name, v, actor)
        try:
            for fname, path in {MODEL_FILE: checked.model_path, **side_files}.items():
                self.store.put_file(self.layout.file(name, v, fname), path)
            self._put_manifest(manifest)
        except BaseException:
            self._abandon(name, v)
            raise
        for alias in aliases:
            self.set_alias(name, alias, v, actor=actor)
        return manifest

    def _check_side_files(self, sizes: dict[str, int]) -> None:
        if len(sizes) > self.limits.max_side_files:
            raise BadRequest(f"at most {self.limits.max_side_files} side files per version")
        for f, size in sizes.items():
            check_file_name(f)
            if size > self.limits.max_side_file_bytes:
                raise TooLarge(f"side file {f!r} is {size} bytes; the limit is {self.limits.max_side_file_bytes}")

    def _validate(self, model_path: Path, side_files: dict[str, Path], metadata: VersionMetadata) -> _Checked:
        # validation imports onnx (~0.1-0.4 s): only registering needs it, not a server's start or its predictions
        from .validation import check_metadata, inspect_onnx

        sig = inspect_onnx(model_path, self.limits.max_model_bytes)
        files = {f: FileInfo(sha256=sha256_file(p), size=p.stat().st_size) for f, p in side_files.items()}
        check_metadata(metadata, sig, set(files))
        return _Checked(model_path, sha256_file(model_path), model_path.stat().st_size, sig, files, metadata)

    def _put_manifest(self, manifest: Manifest) -> None:
        """Written last, only if absent: from here on the version is visible."""
        key = self.layout.file(manifest.name, manifest.version, MANIFEST)
        self.store.put_bytes(key, manifest.model_dump_json(indent=1).encode(), if_none_match=True)

    def _abandon(self, name: str, v: int) -> None:
        """After a failed publish: the manifest first (the version hides), then the files.

        The manifest's write may have committed although it failed; if it cannot be removed either,
        everything stays: a whole, visible version rather than one missing its model. What is left
        of a hidden one is the sweep's.
        """
        prefix = self.layout.version(name, v)
        try:
            self.store.delete(prefix + MANIFEST)
            for f in self._files(name, v):
                if f not in (CLAIM, TOMBSTONE):
                    self.store.delete(prefix + f)
        except Exception as e:
            log.warning("could not clean up version %s of %s after a failed publish: %s", v, name, e)

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
        """Publish a completed upload: check each file's declared sha256, then validate and publish.

        Idempotent per upload: the version number claimed for it is bound to it
        (``uploads/<id>/version.json``), so a registration retried after a lost
        answer, a crash or a timeout answers (or finishes) that same version,
        and two at once publish one version. Until the upload expires.
        """
        record = self._upload_record(upload_id)
        if record["name"] != name:
            raise BadRequest(f"upload {upload_id} was created for model {record['name']!r}, not {name!r}")
        aliases = [check_alias(a) for a in aliases]
        v = self._bound_version(upload_id)
        if v is not None and (done := self._published(name, v)) is not None:
            return self._finish_upload(upload_id, done, aliases, actor)
        try:
            manifest = self._publish_upload(name, upload_id, record, v, metadata or VersionMetadata(), parts, actor)
        except _StagedGone as gone:
            # another registration of this upload finished meanwhile, and removed the staged bytes
            v = self._bound_version(upload_id)
            if v is None or (published := self._published(name, v)) is None:
                raise BadRequest(gone.message) from None
            manifest = published
        return self._finish_upload(upload_id, manifest, aliases, actor)

    def _publish_upload(
        self,
        name: str,
        upload_id: str,
        record: dict[str, Any],
        v: int | None,
        metadata: VersionMetadata,
        parts: dict[str, list[str]] | None,
        actor: str | None,
    ) -> Manifest:
        base = self.layout.upload(upload_id) + "files/"
        for f, mp_id in record.get("multipart", {}).items():
            if self.store.head(base + f) is None:
                if not parts or f not in parts:
                    raise _StagedGone(f"{f} was a multipart upload: send the ETags of its parts")
                try:
                    self.store.complete_multipart(base + f, mp_id, parts[f])
                except NotFound:
                    raise _StagedGone(f"{f} of upload {upload_id} is not there to complete") from None
        with self.store.scratch() as tmp:
            paths: dict[str, Path] = {}
            etags: dict[str, str] = {}
            for f, spec in record["files"].items():
                try:
                    etags[f] = self.store.get_file(base + f, tmp / f, expected_sha256=spec["sha256"]).etag
                except NotFound:
                    raise _StagedGone(f"{f} was never uploaded to upload {upload_id}") from None
                except IntegrityError:
                    raise InvalidModel(
                        f"{f}: the uploaded bytes do not match the declared sha256", code="sha256_mismatch"
                    ) from None
                paths[f] = tmp / f
            model = paths.pop(MODEL_FILE)
            self._check_side_files({f: p.stat().st_size for f, p in paths.items()})
            checked = self._validate(model, paths, metadata)
            if v is None:
                v = self._bind(name, upload_id, actor)
            manifest = checked.manifest(name, v, actor)
            # Published by copy, each only if still the revision checked above (the presigned
            # URL stays valid: someone may upload other bytes meanwhile).
            for f, spec in record["files"].items():
                try:
                    self.store.copy(base + f, self.layout.file(name, v, f), sha256=spec["sha256"], if_match=etags[f])
                except NotFound:
                    raise _StagedGone(f"{f} of upload {upload_id} is gone") from None
                except (PreconditionFailed, IntegrityError):
                    raise Conflict(
                        f"{f} of upload {upload_id} changed while it was being registered: register again",
                        retryable=True,
                    ) from None
            try:
                self._put_manifest(manifest)
            except PreconditionFailed:  # another registration of this upload published the version first
                manifest = self.get_version(name, v)
        return manifest

    def _bound_version(self, upload_id: str) -> int | None:
        try:
            data, _ = self.store.get_bytes(self.layout.upload(upload_id) + UPLOAD_VERSION)
        except NotFound:
            return None
        return int(json.loads(data)["version"])

    def _bind(self, name: str, upload_id: str, actor: str | None) -> int:
        """Claim a version for this upload; if another registration of it bound one first, that one."""
        v = self._claim_version(name, actor, upload_id)
        key = self.layout.upload(upload_id) + UPLOAD_VERSION
        try:
            self.store.put_bytes(key, _dumps({"version": v, "id": _new_id()}), if_none_match=True)
            return v
        except PreconditionFailed:
            bound = self._bound_version(upload_id)  # ours stays an unused number, as a failed publish's does
            if bound is None:
                raise NotFound(f"upload {upload_id!r} expired") from None
            return bound

    def _published(self, name: str, v: int) -> Manifest | None:
        try:
            return self.get_version(name, v)
        except NotFound:
            if self.store.head(self.layout.file(name, v, TOMBSTONE)) is not None:
                raise  # registered, then deleted: say so
            return None

    def _finish_upload(self, upload_id: str, manifest: Manifest, aliases: list[str], actor: str | None) -> Manifest:
        """Aliases (each change named by the upload, so a retry does not repeat it), then the staged bytes go.
        The record and its version stay until the upload expires, to answer retries."""
        for alias in aliases:
            self.set_alias(manifest.name, alias, manifest.version, actor=actor, change_id=f"{upload_id}.{alias}")
        self.store.delete_prefix(self.layout.upload(upload_id) + "files/")
        return manifest

    # ----------------------------------------------------------------- sweep
    def sweep(self, *, older_than: float | None = None) -> dict[str, int]:
        """Remove what failed or crashed work left, once it is older than ``older_than`` seconds
        (default: the upload TTL, so nothing still in progress is touched).

        * expired uploads (staged bytes, records);
        * files of versions never published (claimed, no manifest);
        * files of deleted versions (a delete that crashed half-way);
        * a tombstone an alias still points at (a delete and an alias change that both crashed
          before undoing themselves): the version stays;
        * a manifest without its model (a failed publish's cleanup cut short by older code).

        S3 also expires staged uploads by lifecycle rule; the local store relies on this sweep.
        """
        cutoff = time.time() - (older_than if older_than is not None else self.limits.upload_ttl_seconds)
        removed = dict.fromkeys(SWEEP_COUNTS, 0)
        uploads: dict[str, float] = {}
        for info in self.store.list(self.layout.uploads):
            uid = info.key[len(self.layout.uploads) :].split("/")[0]
            uploads[uid] = max(uploads.get(uid, 0), info.last_modified)
        for uid, last in uploads.items():
            if last < cutoff:
                removed["uploads"] += self.store.delete_prefix(self.layout.upload(uid)) and 1
        for name, versions in self._scan().items():
            aliased: set[int] | None = None
            for v, files in versions.items():
                prefix = self.layout.version(name, v)
                extra = [f for f in files if f not in (CLAIM, TOMBSTONE)]
                if not extra:
                    continue
                if TOMBSTONE in files:
                    if files[TOMBSTONE] >= cutoff:
                        continue
                    if aliased is None:
                        aliased = set().union(*self.pinned(name).values())
                    if MANIFEST in files and v in aliased:
                        self.store.delete(prefix + TOMBSTONE)
                        removed["restored_versions"] += 1
                    else:
                        removed["deleted_files"] += self._purge(name, v)
                elif MANIFEST not in files:
                    if files.get(CLAIM, time.time()) < cutoff:
                        for f in extra:
                            self.store.delete(prefix + f)
                        removed["abandoned_files"] += len(extra)
                elif MODEL_FILE not in files and files[MANIFEST] < cutoff:
                    self._abandon(name, v)
                    removed["broken_versions"] += 1
        if removed["restored_versions"] or removed["deleted_files"] or removed["broken_versions"]:
            log.warning("sweep of tenant %s repaired: %s", self.tenant, removed)
        return removed


SWEEP_COUNTS = ("uploads", "abandoned_files", "deleted_files", "restored_versions", "broken_versions")


def sweep_all(store: ObjectStore, limits: Limits | None = None, *, older_than: float | None = None) -> dict[str, int]:
    """Sweep every tenant of a store, then the store's own work files (the local server runs this periodically)."""
    limits = limits or Limits()
    tenants = {info.key.split("/")[1] for info in store.list("tenants/") if info.key.count("/") >= 2}
    total = dict.fromkeys(SWEEP_COUNTS, 0)
    for t in sorted(tenants):
        try:
            check_name(t, "tenant")
        except InvalidName:  # not a tenant this code wrote
            continue
        for k, v in Registry(store, t, limits).sweep(older_than=older_than).items():
            total[k] += v
    total["work_files"] = store.sweep_leftovers(older_than if older_than is not None else limits.upload_ttl_seconds)
    return total
