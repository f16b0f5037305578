"""Demo models for a new user: the examples, built once (cached) and pushed with ``production``.

``make run`` calls this against the local server it starts, so the registry has
real models to call at once. Building needs the ``convert`` extra (torch); an
example that cannot be built here is skipped with its reason, never fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .client import Client
from .errors import ModelbayError

# registry name -> example name
DEMO_MODELS = {"minilm": "minilm", "digits": "digits", "pii": "pii", "mlp": "mlp"}


def seed(client: Client, cache_dir: str | Path | None = None, *, names: list[str] | None = None,
         say: Callable[[str], None] = lambda _msg: None) -> dict[str, str]:
    """Push each missing demo model; return {name: what happened}."""
    try:
        from .convert import examples
    except ImportError as e:  # the layer and slim installs have no torch
        say(f"demo models need the convert extra: {e}")
        return {}
    existing = {m["name"] for m in client.models()}
    done: dict[str, str] = {}
    for name in names or list(DEMO_MODELS):
        if name in existing:
            done[name] = "present"
            continue
        say(f"building {name} (cached after the first time)")
        try:
            r = examples.build(DEMO_MODELS[name], cache_dir)
            m = client.push(r.onnx_path, name, r.metadata, r.side_files, aliases=["production"])
        except (ModelbayError, ImportError, OSError) as e:
            done[name] = f"skipped: {e}"
            say(f"{name}: skipped ({e})")
            continue
        done[name] = f"version {m.version}"
        say(f"{name}: version {m.version} -> production")
    return done
