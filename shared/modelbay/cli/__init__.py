"""The ``modelbay`` command: a local server, and a client of any modelbay server.

One module per command group; ``output`` prints (tables, JSON, errors, exit codes)
and ``base`` holds the command classes. Only this package imports it.

The groups are imported when the command line is built, and ``modelbay serve`` builds
only its own: the server's start is on the clock (cold start to the first prediction),
and the client groups' imports are not its business.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from .base import App, Ctx

GROUPS = (
    "serve",
    "models",
    "push",
    "predict",
    "generate",
    "canary",
    "capture",
    "drift",
    "metrics",
    "admin",
    "examples",
)


def _root(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", help="Server URL [default: MODELBAY_URL]."),
    api_key: str | None = typer.Option(None, "--api-key", help="API key [default: MODELBAY_API_KEY]."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    ctx.obj = Ctx(url, api_key, as_json)


def build(groups: tuple[str, ...] = GROUPS) -> App:
    """The command line with these command groups."""
    app = App(
        help="modelbay: versioned ONNX models, quantized and served. Every command takes --url, --api-key and "
        "--json, before or after its name."
    )
    for name in groups:
        app.add_typer(importlib.import_module(f"{__name__}.{name}").app)
    app.callback()(_root)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole command line, built on first use (tests, `python -m modelbay`)
        app = globals()["app"] = build()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """The console script ``modelbay``."""
    build(("serve",) if sys.argv[1:2] == ["serve"] else GROUPS)()


__all__ = ["app", "build", "main"]
