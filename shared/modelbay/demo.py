"""Demo models for a new user: the examples, built once (cached) and pushed with ``production``.

``make run`` runs this against the local server it starts, while the TUI is
already open, so models appear as they land. Building needs the ``convert``
extra (torch); an example that cannot be built here is skipped with its reason,
never fatal. Progress is reported as ``SeedStatus`` values carrying an estimate
of the time left: this machine's own build times once it has built an example
(``examples.cache.build_seconds``), else the typical times below.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .errors import BadRequest, ModelbayError
from .schemas import ModelSummary

if TYPE_CHECKING:
    from .convert.pipeline import Uploader

    class DemoTarget(Uploader, Protocol):
        """What seeding needs of ``modelbay.client.Client``: the model list and ``push``."""

        def models(self) -> Sequence[ModelSummary]: ...


# registry name -> example name; the quick ones first, so a new user sees models within seconds
DEMO_MODELS = {"mlp": "mlp", "digits": "digits", "pii": "pii", "minilm": "minilm"}
# seeded when asked by name (``modelbay seed-demo --only smollm2``): its cold build takes minutes
OPTIONAL_DEMOS = {"smollm2": "smollm2"}
# Seconds a cold build takes on a 2-core x86_64 machine (no VNNI) shared with other jobs: measured
# mlp 6-42, digits 94-108, pii 3-11, minilm 140-304 depending on the load.
TYPICAL_BUILD_SECONDS = {"mlp": 20.0, "digits": 90.0, "pii": 10.0, "minilm": 220.0, "smollm2": 420.0}
PUSH_SECONDS = 2.0  # upload and registration of a cached build

State = Literal["building", "pushing", "ready", "present", "skipped", "done"]


@dataclass(frozen=True)
class SeedStatus:
    """One step of seeding: which model, what is happening, and the estimated time left for all of it."""

    model: str  # "" in the final "done" status
    state: State
    detail: str = ""  # the build's current step, the new version, or why the model was skipped
    position: int = 0  # 1-based, of ``total``
    total: int = 0
    remaining_s: float | None = None  # for everything not finished yet, this model included

    def line(self, remaining_s: float | None = None) -> str:
        """The status as one line of text; ``remaining_s`` replaces the estimate (a countdown)."""
        if self.state == "done":
            return f"demo models ready{f': {self.detail}' if self.detail else ''}"
        where = f" ({self.position}/{self.total})" if self.total else ""
        head = {
            "building": f"building {self.model}{where}",
            "pushing": f"pushing {self.model}{where}",
            "ready": f"{self.model} ready{where}",
            "present": f"{self.model} already there{where}",
            "skipped": f"{self.model} skipped{where}",
        }[self.state]
        left = self.remaining_s if remaining_s is None else remaining_s
        if left is not None and self.state in ("building", "pushing"):
            head += f", {estimate(left)}"  # before the detail: a narrow status line cuts the end
        return f"{head}{f': {self.detail}' if self.detail else ''}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeedStatus:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def estimate(seconds: float) -> str:
    """'about 3 min left', 'about 40 s left', 'almost done'."""
    if seconds < 5:
        return "almost done"
    if seconds < 90:
        return f"about {max(5, round(seconds / 5) * 5):.0f} s left"
    return f"about {round(seconds / 60):.0f} min left"


def seed(
    client: DemoTarget,
    cache_dir: str | Path | None = None,
    *,
    names: list[str] | None = None,
    say: Callable[[str], None] = lambda _msg: None,
    progress: Callable[[SeedStatus], None] | None = None,
) -> dict[str, str]:
    """Push each missing demo model; return {name: what happened}.

    ``say`` gets each status as a line of text, ``progress`` the status itself.
    """

    def report(status: SeedStatus) -> None:
        say(status.line())
        if progress is not None:
            progress(status)

    try:
        from .convert import examples
        from .convert.examples import cache
        from .convert.pipeline import push
    except ImportError as e:  # the layer and slim installs have no torch
        say(f"demo models need the convert extra: {e}")
        return {}
    from .settings import Settings

    root = Path(cache_dir) if cache_dir else Settings.from_env().examples_cache
    wanted = names or list(DEMO_MODELS)
    known = {**DEMO_MODELS, **OPTIONAL_DEMOS}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise BadRequest(f"unknown demo models {unknown}; demo models: {', '.join(known)}")
    existing = {m.name for m in client.models()}
    measured = cache.build_seconds(root)
    # the estimate of each model's remaining work; a model's entry drops to 0 when it is finished
    plan = {
        n: 0.0
        if n in existing
        else PUSH_SECONDS
        + (0.0 if examples.is_cached(known[n], root) else measured.get(n, TYPICAL_BUILD_SECONDS.get(n, 60.0)))
        for n in wanted
    }
    done: dict[str, str] = {}
    total = len(wanted)
    for i, name in enumerate(wanted, 1):
        if name in existing:
            done[name] = "present"
            report(SeedStatus(name, "present", "", i, total, sum(plan.values())))
            continue
        started = time.monotonic()

        def left(name: str = name, started: float = started) -> float:
            own = max(plan[name] - (time.monotonic() - started), 1.0)
            return own + sum(v for k, v in plan.items() if k != name)

        def step(message: str, _fraction: float | None = None, name: str = name, i: int = i) -> None:
            report(SeedStatus(name, "building", message, i, total, left(name)))

        report(SeedStatus(name, "building", "", i, total, left()))
        try:
            r = examples.build(known[name], root, progress=step)
            report(SeedStatus(name, "pushing", "", i, total, left()))
            m = push(
                client, r.onnx_path, name=name, metadata=r.metadata, side_files=r.side_files, aliases=["production"]
            ).manifest
        except (ModelbayError, ImportError, OSError) as e:
            plan[name] = 0.0
            done[name] = f"skipped: {e}"
            report(SeedStatus(name, "skipped", str(e), i, total, sum(plan.values())))
            continue
        plan[name] = 0.0
        done[name] = f"version {m.version}"
        report(SeedStatus(name, "ready", f"version {m.version} → production", i, total, sum(plan.values())))
    ready = [n for n, v in done.items() if v.startswith("version") or v == "present"]
    report(SeedStatus("", "done", ", ".join(ready), total, total, 0.0))
    return done
