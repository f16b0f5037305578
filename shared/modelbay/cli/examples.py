"""``modelbay examples build`` and ``modelbay seed-demo``: the example models, built once and cached."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .base import App, ctx_obj
from .output import Col, emit, err, escape, note, size, table

if TYPE_CHECKING:
    from ..demo import SeedStatus

app = App()
examples_app = App(help="Build the example models (cached).")
app.add_typer(examples_app, name="examples")


def _say(message: str, fraction: float | None = None) -> None:
    share = f" [dim]{fraction:.0%}[/]" if fraction is not None and fraction < 1 else ""
    note(f"[dim]..[/] {escape(message)}{share}")


def _pair(a: float | None, b: float | None, fmt: Any = lambda v: f"{v:.3g}") -> str:
    return f"{'-' if a is None else fmt(a)} / {'-' if b is None else fmt(b)}"


@examples_app.command("build")
def build(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="mlp | digits | pii | minilm (default: all)"),
    cache_dir: Path | None = typer.Option(None, help="default ~/.cache/modelbay/examples"),
    target: str = typer.Option("arm64", "--target"),
    force: bool = typer.Option(False, help="rebuild even if cached"),
) -> None:
    """Build example models and print their size, latency and gate numbers."""
    from ..convert import examples

    obj = ctx_obj(ctx)
    names = [name] if name else list(examples.NAMES)
    results = [
        examples.build(n, cache_dir, target=target, force=force, progress=None if obj.as_json else _say) for n in names
    ]
    rows = []
    for r in results:
        m = r.metadata.metrics
        f, q = m.get("fp32", {}), m.get("int8", {})
        gate = m.get("gate") or {}
        metric = gate.get("metric")
        score = (
            _pair(gate.get("fp32", {}).get(metric), gate.get("int8", {}).get(metric), lambda v: f"{v:.4f}")
            if gate
            else ", ".join(f"{k} {v:.4f}" for k, v in m.get("evaluation", {}).items() if k != "samples")
        )
        rows.append(
            [
                r.name,
                r.metadata.quantization.method if r.metadata.quantization else "none",
                _pair(f.get("size_bytes"), q.get("size_bytes"), size),
                _pair(f.get("latency_ms", {}).get("b1"), q.get("latency_ms", {}).get("b1")),
                score,
                "cached" if r.cached else "built",
                str(r.onnx_path),
            ]
        )
    t = table(
        "examples (fp32 / int8)",
        ["name", "method", "size", "b1 ms", Col("gate", flex=True), "build", Col("path", flex=True)],
        rows,
    )
    emit(
        obj.as_json,
        [
            {
                "name": r.name,
                "path": str(r.onnx_path),
                "cached": r.cached,
                "metadata": r.metadata.model_dump(mode="json"),
            }
            for r in results
        ],
        t,
    )


@examples_app.command("files")
def files(
    ctx: typer.Context,
    dest: Path = typer.Argument(Path("."), help="Folder to write into (default: the current one)."),
) -> None:
    """Write files to try push and predict with: model.onnx, iris.pkl, my_pkg/ + w.pt + eval.npz, seven.png."""
    from ..convert.examples import starter

    written = starter.write(dest)
    emit(
        ctx_obj(ctx).as_json,
        [str(p) for p in written],
        table(
            "files to try",
            [Col("file", flex=True), Col("size", right=True)],
            ([p, size(p.stat().st_size)] for p in written),
        ),
    )


class SeedDisplay:
    """Seeding progress: JSON lines on stdout (``--events``), else a live line and a line per model on stderr."""

    def __init__(self, events: bool, quiet: bool) -> None:
        self.events, self.quiet = events, quiet
        console = err()
        self.console = console
        self.live = console.status("") if console.is_terminal and not (events or quiet) else None
        self.last_state: tuple[str, str] | None = None

    def __enter__(self) -> SeedDisplay:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def __call__(self, status: SeedStatus) -> None:
        if self.events:
            typer.echo(json.dumps(status.as_dict()))
            sys.stdout.flush()
            return
        if self.quiet:
            return
        if self.live is not None and status.state in ("building", "pushing"):
            self.live.update(escape(status.line()))
            return
        # one line per model and state (a build reports many steps; a log wants the milestones)
        if (status.model, status.state) != self.last_state:
            self.last_state = (status.model, status.state)
            note(f"[dim]..[/] {escape(status.line())}")


def _stop_on_sigterm() -> None:
    """SIGTERM (the TUI's launcher quitting) unwinds like ctrl-c: half-built example files are removed."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


@app.command("seed-demo")
def seed_demo(
    ctx: typer.Context,
    cache_dir: Path | None = typer.Option(None, help="Example build cache [~/.cache/modelbay/examples]."),
    only: list[str] = typer.Option([], "--only", help="Seed just these demo models."),
    events: bool = typer.Option(
        False, "--events", help="Progress as JSON lines on stdout, one per step (for programs, e.g. make run)."
    ),
) -> None:
    """Build the example models (cached) and push them with the 'production' alias, showing the time left."""
    from ..demo import seed

    obj = ctx_obj(ctx)
    _stop_on_sigterm()
    with obj.client() as c, SeedDisplay(events, obj.as_json) as display:
        result = seed(c, cache_dir, names=only or None, progress=display)
    if not events:
        emit(obj.as_json, result, table("demo models", ["model", Col("result", flex=True)], sorted(result.items())))
