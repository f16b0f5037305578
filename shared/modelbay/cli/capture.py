"""``modelbay capture set|off|show|export``: a sampled share of a model's requests and responses, kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from .base import App, ctx_obj
from .output import emit, escape, note

app = App()
capture_app = App(help="Capture a sampled share of a model's requests and responses (off by default).")
app.add_typer(capture_app, name="capture")


def _line(name: str, rate: float, inputs: bool, outputs: bool) -> str:
    if rate <= 0:
        return f"{escape(name)}: capture off"
    what = " and ".join(w for w, on in (("inputs", inputs), ("outputs", outputs)) if on) or "metadata only"
    return f"{escape(name)}: capturing {rate:.1%} of requests ({what})"


@capture_app.command("set")
def set_cmd(
    ctx: typer.Context,
    name: str,
    sample: float = typer.Option(..., "--sample", help="Share of requests captured, 0-1 (0: off)."),
    inputs: bool = typer.Option(True, "--inputs/--no-inputs", help="Keep the request payloads."),
    outputs: bool = typer.Option(True, "--outputs/--no-outputs", help="Keep the responses."),
) -> None:
    """Capture a sampled share of NAME's requests."""
    if not 0 <= sample <= 1:
        raise typer.BadParameter("--sample must be between 0 and 1")
    obj = ctx_obj(ctx)
    with obj.client() as c:
        cfg = c.set_capture(name, sample, inputs=inputs, outputs=outputs)
    emit(obj.as_json, cfg, _line(name, cfg.sample_rate, cfg.inputs, cfg.outputs))


@capture_app.command("off")
def off(ctx: typer.Context, name: str) -> None:
    """Stop capturing NAME's requests (what was captured stays until it expires)."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        cfg = c.set_capture(name, 0.0)
    emit(obj.as_json, cfg, _line(name, 0, True, True))


@capture_app.command("show")
def show_cmd(ctx: typer.Context, name: str) -> None:
    """NAME's capture settings."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        cfg = c.capture_config(name)
    emit(obj.as_json, cfg, _line(name, cfg.sample_rate, cfg.inputs, cfg.outputs))


@capture_app.command("export")
def export(
    ctx: typer.Context,
    name: str,
    since: str = typer.Option("1h", help="How far back, e.g. 15m, 1h, 7d."),
    limit: int = typer.Option(10_000, help="Most records."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write JSON Lines here (default: stdout)."),
) -> None:
    """Download what was captured of NAME as JSON Lines, oldest first."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        got = c.captured(name, since, limit)
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in got.records)
    if output is not None:
        output.write_text(text)
        note(f"{len(got.records)} records of {name} written to {output}")
    else:
        sys.stdout.write(text)
    if got.truncated:
        note(f"more than {limit} records matched: raise --limit or narrow --since")
