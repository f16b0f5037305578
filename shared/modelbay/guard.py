"""Canary guard rails: read a canary's metrics against its stable version's, and act on the verdict.

Transport-free. ``evaluate`` only reads; ``enforce`` also acts: a breach aborts
the canary (the reason goes into the alias history and, through an audited
registry, the audit log); a canary that holds climbs its ramp, and reaching
100% promotes it. ``check_all`` runs ``enforce`` on every marked canary of a
store: the local server's background task and the scheduled function on AWS
both call it, and the change ids derived from the canary's id make two
checkers that act at once apply each step once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import Conflict, InvalidName, NotFound, PreconditionFailed
from .layout import check_name
from .metrics.series import Totals, parse_duration
from .registry import CANARY_INDEX, Registry
from .schemas import AliasState, Canary, GuardRails, GuardVerdict

if TYPE_CHECKING:
    from .metrics import MetricsBackend
    from .settings import Limits
    from .storage import ObjectStore

log = logging.getLogger("modelbay.guard")
GUARD_ACTOR = "modelbay-guard"
# a version's fault; a caller's bad request or unknown model is not
# what counts against a version: failures of the version itself, not callers' mistakes (a run that fails on
# inputs that passed validation is the version's, when the stable one answers them)
SERVER_ERRORS = ("internal", "timeout", "load_failure", "inference_failed")
# a mark younger than this may belong to a canary still being started: not removed
MARK_GRACE_SECONDS = 300.0


def _figures(t: Totals) -> dict[str, float | int | None]:
    errors = sum(t.errors_by_type.get(e, 0) for e in SERVER_ERRORS)
    return {
        "requests": t.requests,
        "errors": errors,
        "error_rate": errors / t.requests if t.requests else None,
        "p95_ms": t.p95_ms,
        "feedback": t.feedback,
        "accuracy": t.accuracy,
    }


def _window(guard: GuardRails, canary: Canary, now: float) -> tuple[float, float]:
    """Whole minutes (every metrics back end's resolution) from the later of the window's start and the
    canary's last change of share, to the end of the current minute."""
    start = max(now - parse_duration(guard.window, "window"), canary.since)
    return math.floor(start / 60) * 60.0, (math.floor(now / 60) + 1) * 60.0


def breaches(
    guard: GuardRails, canary: dict[str, float | int | None], stable: dict[str, float | int | None]
) -> list[str]:
    """What the canary's figures break; empty when it holds (or cannot be judged on that rail yet)."""
    out: list[str] = []
    rate = canary["error_rate"]
    if guard.max_error_rate is not None and rate is not None and rate > guard.max_error_rate:
        out.append(
            f"error rate {rate:.1%} > {guard.max_error_rate:.1%} ({canary['errors']} of {canary['requests']} requests)"
        )
    c95, s95 = canary["p95_ms"], stable["p95_ms"]
    if guard.max_p95_ratio is not None and c95 is not None and s95 and c95 / s95 > guard.max_p95_ratio:
        out.append(f"p95 {c95:.1f} ms is {c95 / s95:.2f}x the stable {s95:.1f} ms (limit {guard.max_p95_ratio}x)")
    acc, fed = canary["accuracy"], canary["feedback"] or 0
    judged = guard.min_accuracy is not None and acc is not None and fed >= guard.min_feedback
    if judged and acc is not None and guard.min_accuracy is not None and acc < guard.min_accuracy:
        out.append(f"feedback accuracy {acc:.1%} < {guard.min_accuracy:.1%} ({fed} judged)")
    return out


def evaluate(backend: MetricsBackend, reg: Registry, name: str, alias: str, now: float | None = None) -> GuardVerdict:
    """The verdict on an alias's canary from the metrics, without acting on it."""
    now = time.time() if now is None else now
    state = reg.alias_state(name, alias)
    return _evaluate(backend, reg, state, now)


def _evaluate(backend: MetricsBackend, reg: Registry, state: AliasState, now: float) -> GuardVerdict:
    canary = state.canary
    verdict = GuardVerdict(model=state.model, alias=state.alias, state="none", stable_version=state.version)
    if canary is None or state.version is None:
        return verdict
    guard = canary.guard or GuardRails()
    start, end = _window(guard, canary, now)
    step = int(end - start)
    c = _figures(backend.series(reg.tenant, state.model, canary.version, start, end, step).totals)
    s = _figures(backend.series(reg.tenant, state.model, state.version, start, end, step).totals)
    verdict = verdict.model_copy(
        update={"canary_version": canary.version, "percent": canary.percent, "canary": c, "stable": s}
    )
    if canary.guard is None:
        return verdict.model_copy(update={"state": "holding"})
    if int(c["requests"] or 0) < guard.min_requests:
        return verdict.model_copy(
            update={"state": "waiting", "reasons": [f"{c['requests']} of {guard.min_requests} requests"]}
        )
    found = breaches(guard, c, s)
    return verdict.model_copy(update={"state": "breached" if found else "holding", "reasons": found})


def enforce(backend: MetricsBackend, reg: Registry, name: str, alias: str, now: float | None = None) -> GuardVerdict:
    """``evaluate``, then act: abort on a breach; climb the ramp (promote at 100%) while the rails hold."""
    now = time.time() if now is None else now
    state = reg.alias_state(name, alias)
    verdict = _evaluate(backend, reg, state, now)
    canary = state.canary
    if canary is None or canary.guard is None:
        return verdict
    try:
        if verdict.state == "breached":
            reason = "guard rail breached: " + "; ".join(verdict.reasons)
            reg.abort_canary(
                name,
                alias,
                expected_canary=canary.version,
                actor=GUARD_ACTOR,
                change_id=f"{canary.id}.guard-abort",
                reason=reason,
            )
            log.warning("%s/%s:%s canary v%d aborted: %s", reg.tenant, name, alias, canary.version, reason)
        elif verdict.state == "holding" and (nxt := next((p for p in canary.steps if p > canary.percent), None)):
            reason = f"guard rails held over {verdict.canary['requests']} requests"
            reg.ramp_canary(
                name,
                alias,
                nxt,
                expected_canary=canary.version,
                actor=GUARD_ACTOR,
                change_id=f"{canary.id}.ramp-{nxt:g}",
                reason=reason,
            )
            verdict = verdict.model_copy(update={"state": "promoted" if nxt >= 100 else "ramped", "percent": nxt})
    except (Conflict, PreconditionFailed, NotFound) as e:  # changed by someone else meanwhile: theirs stands
        log.info("%s/%s:%s canary changed during its check: %s", reg.tenant, name, alias, e)
    return verdict


def check_all(
    store: ObjectStore,
    backend: MetricsBackend,
    limits: Limits | None = None,
    *,
    audited: bool = True,
    now: float | None = None,
) -> list[GuardVerdict]:
    """``enforce`` on every canary of every tenant (found through the marks ``start_canary`` writes)."""
    from .auth.audit import AuditedRegistry, AuditLog

    now = time.time() if now is None else now
    audit = AuditLog(store) if audited else None
    out: list[GuardVerdict] = []
    for info in list(store.list(CANARY_INDEX)):
        parts = info.key[len(CANARY_INDEX) :].split("/")
        try:
            tenant, name, alias = (check_name(p) for p in parts) if len(parts) == 3 else ("", "", "")
        except InvalidName:
            continue
        if not tenant:
            continue
        reg = (
            AuditedRegistry(store, tenant=tenant, limits=limits, audit=audit)
            if audit
            else Registry(store, tenant=tenant, limits=limits)
        )
        try:
            state = reg.alias_state(name, alias)
            if state.canary is None:
                raise NotFound("no canary")
            out.append(enforce(backend, reg, name, alias, now))
        except NotFound:
            if info.last_modified < now - MARK_GRACE_SECONDS:
                store.delete(info.key)
        except Exception:  # one tenant's trouble must not stop the others' checks
            log.exception("guard check of %s/%s:%s failed", tenant, name, alias)
    return out


def watch(store: ObjectStore, backend: MetricsBackend, limits: Limits, interval: float) -> Callable[[], None]:
    """Run ``check_all`` every ``interval`` seconds in a daemon thread (the local server); returns its stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                check_all(store, backend, limits)
            except Exception:  # the next round tries again
                log.exception("canary guard check failed")

    threading.Thread(target=loop, daemon=True, name="modelbay-guard").start()
    return stop.set
