"""``modelbay metrics|feedback|bench-load``: traffic, accuracy, and a load generator."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.live import Live

from ..metrics.loadgen import LoadReport, run_load
from ..refs import parse_ref
from .base import App, ctx_obj
from .output import Col, emit, err, escape, note, number, percent, read_json, show, table

app = App()


@app.command("metrics")
def metrics_cmd(
    ctx: typer.Context,
    ref: str | None = typer.Argument(None, help="NAME, NAME@VERSION or NAME:ALIAS; none: all"),
    window: str = typer.Option("1h", "--window", "-w", help="e.g. 15m, 1h, 24h"),
    by_version: bool = typer.Option(False, "--by-version", help="A row per version."),
) -> None:
    """Traffic, errors, latency percentiles and feedback accuracy over a window."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        if ref is None:
            overview = c.metrics_overview(window)
            emit(
                obj.as_json,
                overview,
                table(
                    f"last {window}",
                    [
                        "model",
                        Col("requests", right=True),
                        Col("req/s", right=True),
                        Col("error rate", right=True),
                        Col("p95 ms", right=True),
                    ],
                    (
                        [name, m.requests, number(m.rate_per_s, digits=2), percent(m.error_rate), number(m.p95_ms)]
                        for name, m in sorted(overview.models.items())
                    ),
                ),
            )
            return
        name, r = parse_ref(ref)
        data = c.metrics(name, window, ref=r, by_version=by_version)
    series = [("all" if r is None else ref, data.overall)] + [(f"v{v}", s) for v, s in data.versions.items()]
    t = table(
        f"{ref}, last {window}",
        [
            "series",
            *(Col(h, right=True) for h in ("requests", "errors", "p50 ms", "p95 ms", "p99 ms", "cold", "accuracy")),
        ],
        (
            [
                label,
                s.totals.requests,
                s.totals.errors,
                number(s.totals.p50_ms),
                number(s.totals.p95_ms),
                number(s.totals.p99_ms),
                s.totals.cold_starts,
                percent(s.totals.accuracy),
            ]
            for label, s in series
        ),
    )
    emit(obj.as_json, data, t)


@app.command("feedback")
def feedback_cmd(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME:ALIAS"),
    items: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="JSON list of {prediction, label} / {correct} / {score}"
    ),
) -> None:
    """Post ground truth for earlier predictions (it becomes accuracy per version)."""
    obj = ctx_obj(ctx)
    name, r = parse_ref(ref)
    body = read_json(items, "feedback file")
    with obj.client() as c:
        res = c.feedback(name, body if isinstance(body, list) else [body], ref=r)
    emit(
        obj.as_json,
        res,
        f"[green]accepted[/] {res.accepted} for {escape(name)} v{res.version} ({res.correct}/{res.labelled} correct)",
    )


def _line(rep: LoadReport) -> str:
    lat = rep.latency()
    return (
        f"{rep.sent} sent  {rep.ok} ok  {sum(rep.errors.values())} errors  {rep.rate:.1f} req/s  "
        f"p50 {number(lat['p50_ms'])} ms  p95 {number(lat['p95_ms'])} ms"
    )


def _progress(rep: LoadReport, duration: float) -> str:
    return f"{min(rep.elapsed_s, duration):.0f}/{duration:g} s  {_line(rep)}"


@app.command("bench-load")
def bench_load(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME:ALIAS"),
    rate: float = typer.Option(20.0, "--rate", "-r", help="Requests per second (0: flat out)."),
    duration: float = typer.Option(30.0, "--duration", "-d", help="Seconds."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, max=256),
    batch: int = typer.Option(1, "--batch", "-b", min=1, help="Instances per request."),
    bad: float = typer.Option(0.0, "--bad", min=0.0, max=1.0, help="Fraction of deliberately malformed requests."),
    instances: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="JSON list of instances to draw from."
    ),
) -> None:
    """Generate prediction traffic against a model and report client-side rate and latency."""
    obj = ctx_obj(ctx)
    name, r = parse_ref(ref)
    pool = read_json(instances, "--instances") if instances else None
    console = err()
    kw = {
        "rate": rate,
        "duration_s": duration,
        "concurrency": concurrency,
        "batch": batch,
        "bad_fraction": bad,
        "instances": pool,
    }
    if obj.as_json:
        rep = run_load(obj.client, name, r, **kw)  # type: ignore[arg-type]
    else:
        pace = "as fast as it answers" if rate <= 0 else f"{rate:g} req/s"
        note(f"sending {pace} to {escape(ref)} for {duration:g} s from {concurrency} threads (ctrl-c stops)")
        if console.is_terminal:
            with Live("starting…", console=console, transient=True) as live:
                tick = lambda x: live.update(_progress(x, duration))  # noqa: E731
                rep = run_load(obj.client, name, r, on_tick=tick, **kw)  # type: ignore[arg-type]
        else:  # a log or a pipe: a line every few seconds, not a redrawn one
            last = [0.0]

            def every_5s(x: LoadReport) -> None:
                if x.elapsed_s - last[0] >= 5.0:
                    last[0] = x.elapsed_s
                    note(_progress(x, duration))

            rep = run_load(obj.client, name, r, on_tick=every_5s, **kw)  # type: ignore[arg-type]
    emit(obj.as_json, rep.as_dict(), _line(rep) + (f"  by code: {escape(show(rep.errors))}" if rep.errors else ""))
