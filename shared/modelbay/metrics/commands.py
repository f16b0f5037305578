"""CLI commands for metrics, the load generator and the terminal UI (registered in ``modelbay.cli``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _fmt(v, unit: str = "", digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def register(app: typer.Typer) -> None:
    @app.command("metrics")
    def metrics_cmd(ctx: typer.Context,
                    ref: Optional[str] = typer.Argument(None, help="NAME, NAME@VERSION or NAME:ALIAS; none: all"),
                    window: str = typer.Option("1h", "--window", "-w", help="e.g. 15m, 1h, 24h"),
                    by_version: bool = typer.Option(False, "--by-version", help="A row per version.")):
        """Traffic, errors, latency percentiles and feedback accuracy over a window."""
        from rich.table import Table

        from ..cli import _emit
        from ..refs import parse_ref

        with ctx.obj.client() as c:
            if ref is None:
                data = c.metrics_overview(window)
                t = Table("model", "requests", "req/s", "error rate", "p95 ms", title=f"last {window}")
                for name, m in sorted(data["models"].items()):
                    t.add_row(name, str(m["requests"]), _fmt(m["rate_per_s"], digits=2),
                              _fmt(None if m["error_rate"] is None else m["error_rate"] * 100, "%"),
                              _fmt(m["p95_ms"]))
                return _emit(ctx, data, t)
            name, r = parse_ref(ref)
            data = c.metrics(name, window, ref=r, by_version=by_version)
        t = Table("series", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "cold", "accuracy",
                  title=f"{ref}, last {window}")
        rows = [("all" if r is None else ref, data["overall"])] + [(f"v{v}", s) for v, s in data["versions"].items()]
        for label, s in rows:
            tt = s["totals"]
            t.add_row(label, str(tt["requests"]), str(tt["errors"]), _fmt(tt["p50_ms"]), _fmt(tt["p95_ms"]),
                      _fmt(tt["p99_ms"]), str(tt["cold_starts"]),
                      _fmt(None if tt["accuracy"] is None else tt["accuracy"] * 100, "%"))
        _emit(ctx, data, t)

    @app.command("feedback")
    def feedback_cmd(ctx: typer.Context, ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME:ALIAS"),
                     items: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                  help="JSON list of {prediction, label} / {correct} / {score}")):
        """Post ground truth for earlier predictions (it becomes accuracy per version)."""
        from ..cli import _emit
        from ..refs import parse_ref

        name, r = parse_ref(ref)
        with ctx.obj.client() as c:
            res = c.feedback(name, json.loads(items.read_text()), ref=r)
        _emit(ctx, res, f"[green]accepted[/] {res['accepted']} for {name} v{res['version']} "
                        f"({res['correct']}/{res['labelled']} correct)")

    @app.command("bench-load")
    def bench_load(ctx: typer.Context, ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME:ALIAS"),
                   rate: float = typer.Option(20.0, "--rate", "-r", help="Requests per second (0: flat out)."),
                   duration: float = typer.Option(30.0, "--duration", "-d", help="Seconds."),
                   concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, max=256),
                   batch: int = typer.Option(1, "--batch", "-b", min=1, help="Instances per request."),
                   bad: float = typer.Option(0.0, "--bad", min=0.0, max=1.0,
                                             help="Fraction of deliberately malformed requests."),
                   instances: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                                            help="JSON list of instances to draw from.")):
        """Generate prediction traffic against a model and report client-side rate and latency."""
        from rich.live import Live

        from ..cli import _emit, err
        from ..refs import parse_ref
        from .loadgen import run_load

        name, r = parse_ref(ref)
        pool = json.loads(instances.read_text()) if instances else None

        def line(rep) -> str:
            lat = rep.latency()
            return (f"{rep.sent} sent  {rep.ok} ok  {sum(rep.errors.values())} errors  {rep.rate:.1f} req/s  "
                    f"p50 {_fmt(lat['p50_ms'])} ms  p95 {_fmt(lat['p95_ms'])} ms")

        if ctx.obj.as_json or not err.is_terminal:
            rep = run_load(ctx.obj.client, name, r, rate=rate, duration_s=duration, concurrency=concurrency,
                           batch=batch, bad_fraction=bad, instances=pool)
        else:
            with Live("starting…", console=err, transient=True) as live:
                rep = run_load(ctx.obj.client, name, r, rate=rate, duration_s=duration, concurrency=concurrency,
                               batch=batch, bad_fraction=bad, instances=pool,
                               on_tick=lambda x: live.update(line(x)))
        _emit(ctx, rep.as_dict(), line(rep) + (f"  by code: {rep.errors}" if rep.errors else ""))

    @app.command("tui")
    def tui(ctx: typer.Context,
            profile: Optional[str] = typer.Option(None, "--profile", "-p", help="A saved connection profile."),
            theme: Optional[str] = typer.Option(None, help="A Textual theme, e.g. textual-light.")):
        """Open the terminal UI (on --url, a saved profile, or the last used one)."""
        try:
            from modelbay_tui.app import ModelbayApp
        except ImportError as e:  # the tui extra is not installed
            raise typer.BadParameter(f"the terminal UI needs the 'tui' extra: pip install 'modelbay[tui]' ({e})")
        ModelbayApp(url=ctx.obj.url, api_key=ctx.obj.api_key, profile=profile, theme_name=theme).run()
