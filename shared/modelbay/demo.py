"""Demo models for a new user: the examples, built once (cached) and pushed with ``production``.

``make run`` calls this against the local server it starts, so the registry has
real models to call at once. Building needs the ``convert`` extra (torch); an
example that cannot be built here is skipped with its reason, never fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import ModelbayError
from .schemas import ModelSummary

if TYPE_CHECKING:
    from .convert.pipeline import Uploader

    class DemoTarget(Uploader, Protocol):
        """What seeding needs of ``modelbay.client.Client``: the model list and ``push``."""

        def models(self) -> Sequence[ModelSummary]: ...


# registry name -> example name
DEMO_MODELS = {"minilm": "minilm", "digits": "digits", "pii": "pii", "mlp": "mlp"}


def seed(
    client: DemoTarget,
    cache_dir: str | Path | None = None,
    *,
    names: list[str] | None = None,
    say: Callable[[str], None] = lambda _msg: None,
) -> dict[str, str]:
    """Push each missing demo model; return {name: what happened}."""
    try:
        from .convert import examples
        from .convert.pipeline import push
    except ImportError as e:  # the layer and slim installs have no torch
        say(f"demo models need the convert extra: {e}")
        return {}
    existing = {m.name for m in client.models()}
    done: dict[str, str] = {}
    for name in names or list(DEMO_MODELS):
        if name in existing:
            done[name] = "present"
            continue
        say(f"building {name} (cached after the first time)")
        try:
            r = examples.build(DEMO_MODELS[name], cache_dir)
            m = push(
                client, r.onnx_path, name=name, metadata=r.metadata, side_files=r.side_files, aliases=["production"]
            ).manifest
        except (ModelbayError, ImportError, OSError) as e:
            done[name] = f"skipped: {e}"
            say(f"{name}: skipped ({e})")
            continue
        done[name] = f"version {m.version}"
        say(f"{name}: version {m.version} -> production")
    return done
