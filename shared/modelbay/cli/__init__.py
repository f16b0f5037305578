"""The ``modelbay`` command: a local server, and a client of any modelbay server.

One module per command group; ``output`` prints (tables, JSON, errors, exit codes)
and ``base`` holds the command classes. Only this package imports it.
"""

from __future__ import annotations

import typer

from . import admin, examples, generate, metrics, models, predict, push, serve
from .base import App, Ctx

app = App(
    help="modelbay: versioned ONNX models, quantized and served. Every command takes --url, --api-key and "
    "--json, before or after its name."
)
for group in (serve, models, push, predict, generate, metrics, admin, examples):
    app.add_typer(group.app)


@app.callback()
def _root(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", help="Server URL [default: MODELBAY_URL]."),
    api_key: str | None = typer.Option(None, "--api-key", help="API key [default: MODELBAY_API_KEY]."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    ctx.obj = Ctx(url, api_key, as_json)


def main() -> None:
    """The console script ``modelbay``."""
    app()


__all__ = ["app", "main"]
