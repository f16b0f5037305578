"""The management API's types: one class per concept.

The registry returns them, the routes declare them as ``response_model`` (or take
them as request bodies), and ``modelbay.client.Client`` parses answers into them,
so the CLI and the TUI read attributes, never string keys. The manifest itself
lives in ``modelbay.manifest``; metrics types in ``modelbay.metrics.service``.
"""

from __future__ import annotations

from typing import Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from .manifest import Manifest, VersionMetadata

AliasAction = Literal["set", "delete", "rollback", "revert", "canary", "ramp", "promote", "abort", "shadow"]

# One entry of an alias's history. A TypedDict rather than a model: its key ``from``
# is a Python keyword, and the stored alias documents already use these keys.
# ``id`` names the change, so a retried change is recognised (older entries have none).
AliasChange = TypedDict(
    "AliasChange",
    {
        "at": str,
        "by": str | None,
        "from": int | None,
        "to": int | None,
        "action": AliasAction,
        "id": NotRequired[str],
        # canary changes: the split after the change, and why an abort happened
        "canary": NotRequired[dict[str, int | float] | None],
        "reason": NotRequired[str],
        "shadow": NotRequired[dict[str, int | float] | None],
    },
)


class Schema(BaseModel):
    # Answers may gain fields in a newer server; an older client ignores them.
    model_config = ConfigDict(extra="ignore")


# ------------------------------------------------------------------ models and versions
class ModelSummary(Schema):
    name: str
    latest_version: int
    version_count: int
    aliases: dict[str, int]
    updated_at: float = Field(description="epoch seconds of the latest version")


class ModelList(Schema):
    models: list[ModelSummary]


class ModelDetail(Schema):
    name: str
    aliases: dict[str, int]
    versions: list[Manifest]
    canaries: dict[str, Canary] = Field({}, description="alias -> its canary, for aliases that have one")
    last_changes: dict[str, AliasChange] = Field({}, description="alias -> its latest change")

    def aliases_of(self, version: int) -> list[str]:
        return sorted(a for a, v in self.aliases.items() if v == version)

    def manifest(self, version: int) -> Manifest | None:
        return next((m for m in self.versions if m.version == version), None)


class VersionList(Schema):
    versions: list[Manifest]


class Deleted(Schema):
    deleted: bool = True
    model: str
    version: int


class Resolution(Schema):
    """What a reference names: the version a bare name, an alias or a number stands for."""

    model: str
    ref: str | None = Field(description="as asked; null: the bare name")
    version: int
    alias: str | None = Field(description="the alias followed (a bare name follows 'production' when set)")
    manifest: Manifest | None = None
    canary: Canary | None = Field(None, description="the alias's canary: a share of its traffic goes there")
    shadow: Shadow | None = Field(None, description="a version that also runs a sample of the alias's requests")


# ------------------------------------------------------------------ aliases
class GuardRails(Schema):
    """Limits a canary must hold, judged over ``window`` once it has served ``min_requests``.

    Errors are the server's (internal, timeout, load failure): a client's bad request is not the version's fault.
    """

    max_error_rate: float | None = Field(None, ge=0, le=1, description="e.g. 0.05: at most 5% of requests fail")
    max_p95_ratio: float | None = Field(None, gt=0, le=1000, description="canary p95 / stable p95, e.g. 1.5")
    min_accuracy: float | None = Field(None, ge=0, le=1, description="feedback accuracy of the canary")
    window: str = Field("5m", pattern=r"^\d{1,5}[smh]$", description="how far back the metrics are read")
    min_requests: int = Field(20, ge=1, le=1_000_000, description="no verdict before the canary served this many")
    min_feedback: int = Field(10, ge=1, le=1_000_000, description="labelled feedback needed to judge accuracy")

    @property
    def empty(self) -> bool:
        return self.max_error_rate is None and self.max_p95_ratio is None and self.min_accuracy is None


class Canary(Schema):
    """A share of an alias's traffic on another version; the rest stays on the alias's ``version``."""

    version: int = Field(ge=1)
    percent: float = Field(gt=0, lt=100)
    id: str = Field(description="names this canary: automatic changes to it carry ids derived from it")
    started_at: float = Field(description="epoch seconds of the start")
    since: float = Field(description="epoch seconds of the last change of share: guard rails read from here")
    guard: GuardRails | None = None
    steps: list[float] = Field([], description="the shares a ramp climbs through while the guard rails hold")


class Shadow(Schema):
    """A version that also runs a sampled share of the alias's requests, after they are answered; its answers
    are compared with the primary's and discarded."""

    version: int = Field(ge=1)
    rate: float = Field(gt=0, le=1)


class AliasState(Schema):
    model: str
    alias: str
    version: int | None = Field(description="the stable version: all traffic, or all but the canary's share")
    updated_at: str | None = None
    updated_by: str | None = None
    history: list[AliasChange] = []
    canary: Canary | None = None
    shadow: Shadow | None = None

    @property
    def last_change(self) -> AliasChange | None:
        return self.history[-1] if self.history else None


class AliasList(Schema):
    aliases: dict[str, int]


class CanaryStart(Schema):
    version: int = Field(ge=1)
    percent: float = Field(gt=0, lt=100)
    guard: GuardRails | None = None
    steps: list[float] = Field([], max_length=20, description="ramp, e.g. [25, 50, 100]; 100 promotes")
    expected_version: int | None = Field(
        None, description="compare-and-swap: start only if the alias's stable version is this one"
    )


class CanaryChange(Schema):
    """Ramp, promote or abort: ``expected_canary`` makes it apply only to that canary version."""

    percent: float | None = Field(None, gt=0, le=100, description="ramp only: the new share (100 promotes)")
    expected_canary: int | None = Field(None, ge=1)
    reason: str | None = Field(None, max_length=500)


class ShadowSet(Schema):
    version: int = Field(ge=1)
    rate: float = Field(gt=0, le=1, description="share of the alias's requests also run on the shadow")


class ShadowFigures(Schema):
    """The shadow against the primary, over the requests this process shadowed."""

    model: str
    alias: str
    version: int | None = None
    rate: float | None = None
    runs: int = 0
    errors: int = 0
    dropped: int = Field(0, description="sampled but not run: the shadow queue was full")
    compared: int = 0
    agreement: float | None = Field(None, description="share of answers that agree (same top label, cosine >= 0.99)")
    mean_cosine: float | None = None
    max_abs_diff: float | None = None
    primary_mean_ms: float | None = None
    shadow_mean_ms: float | None = None


class GuardVerdict(Schema):
    """One evaluation of a canary's guard rails."""

    model: str
    alias: str
    state: Literal["none", "waiting", "holding", "breached", "ramped", "promoted"]
    canary_version: int | None = None
    stable_version: int | None = None
    percent: float | None = None
    reasons: list[str] = []
    canary: dict[str, float | int | None] = Field({}, description="requests, error_rate, p95_ms, accuracy")
    stable: dict[str, float | int | None] = {}


class AliasSet(Schema):
    version: int = Field(ge=1)
    expected_version: int | None = Field(
        None, description="compare-and-swap: change only if the alias points here now (null: alias must not exist)"
    )


# ------------------------------------------------------------------ uploads
class FileDecl(Schema):
    size: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class UploadRequest(Schema):
    files: dict[str, FileDecl] = Field(description="file name -> size and sha256; 'model.onnx' is required")


class UploadPart(Schema):
    part_number: int
    url: str


class UploadTarget(Schema):
    method: str = "PUT"
    url: str | None = None
    headers: dict[str, str] = {}
    multipart_id: str | None = None
    part_size: int | None = None
    parts: list[UploadPart] = []


class UploadSession(Schema):
    upload_id: str
    name: str
    expires_at: float
    files: dict[str, FileDecl]
    targets: dict[str, UploadTarget]
    # stores without presigned URLs: the bearer token of the server's own upload URL (it travels in the URL)
    token: str | None = Field(None, exclude=True)


class RegisterRequest(Schema):
    upload_id: str
    metadata: VersionMetadata = VersionMetadata()
    aliases: list[str] = []
    parts: dict[str, list[str]] | None = Field(None, description="multipart files: ETags of their parts in order")


# ------------------------------------------------------------------ keys, tenants, audit
class KeyCreate(Schema):
    scopes: list[str] = Field(min_length=1, max_length=3, description="any of invoke, manage, admin")
    tenant: str | None = Field(None, max_length=64, description="default: the caller's tenant")
    name: str = Field("", max_length=128)
    root: bool = Field(False, description="operator key: manages tenants and every tenant's keys")
    expires_in_days: float | None = Field(None, gt=0, le=3650, description="1/24 (an hour) to 3650; none: never")


class KeyInfo(Schema):
    key_id: str
    prefix: str
    tenant: str
    scopes: list[str]
    name: str
    root: bool
    active: bool
    created_at: float
    created_by: str | None
    expires_at: float | None
    revoked_at: float | None
    revoked_by: str | None
    gateway_key_id: str | None = None

    @property
    def state(self) -> str:
        return "active" if self.active else ("revoked" if self.revoked_at else "expired")


class NewKey(KeyInfo):
    key: str = Field(description="the secret, shown once: store it now")


class KeyList(Schema):
    keys: list[KeyInfo]


class TenantCreate(Schema):
    name: str = Field(max_length=64)
    description: str = Field("", max_length=512)


class TenantInfo(Schema):
    name: str
    description: str
    created_at: float
    created_by: str | None


class TenantList(Schema):
    tenants: list[TenantInfo]


class AuditRecord(BaseModel):
    """One audited change; the details differ by action and are kept as extra fields."""

    model_config = ConfigDict(extra="allow")
    at: str
    tenant: str
    actor: str | None = None
    action: str
    target: str

    @property
    def details(self) -> dict[str, object]:
        return dict(self.model_extra or {})


class AuditList(Schema):
    records: list[AuditRecord]


class WhoAmI(Schema):
    tenant: str
    scopes: list[str]
    key_id: str | None
    root: bool


Resolution.model_rebuild()
ModelDetail.model_rebuild()
