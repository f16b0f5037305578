"""``modelbay drift NAME`` and ``modelbay drift-reference NAME``: captured inputs against a version's reference."""

from __future__ import annotations

from pathlib import Path

import typer

from .base import App, ctx_obj
from .output import Col, emit, read_json, table

app = App()


@app.command("drift")
def drift_cmd(
    ctx: typer.Context,
    name: str,
    window: str = typer.Option("1h", help="The captured window to judge, e.g. 15m, 1h, 24h."),
    version: int | None = typer.Option(None, help="Default: the production alias's version, else the latest."),
    top: int = typer.Option(10, help="Features shown, most drifted first."),
) -> None:
    """Drift of NAME's captured inputs (capture must be on) against its version's reference: PSI and KS."""
    obj = ctx_obj(ctx)
    with obj.client() as c:
        rep = c.drift(name, window, version)
    verdict = "DRIFT" if rep.drift else "no drift"
    title = (
        f"{name} v{rep.version} over {window}: {verdict} "
        f"({rep.drifted_features}/{len(rep.features)} features, {rep.rows} rows vs {rep.reference_rows})"
    )
    rows = [
        [
            f.feature,
            f"{f.psi:.3f}",
            f"{f.ks:.3f}",
            f"{f.ks_critical:.3f}",
            f"{f.reference_mean:.3g}",
            f"{f.current_mean:.3g}",
            "yes" if f.drifted else "no",
        ]
        for f in rep.features[:top]
    ]
    cols: list[Col | str] = [
        Col("feature", right=True),
        Col("PSI", right=True),
        Col("KS", right=True),
        Col("KS crit", right=True),
        Col("ref mean", right=True),
        Col("mean", right=True),
        "drifted",
    ]
    emit(obj.as_json, rep, table(title, cols, rows))


@app.command("drift-reference")
def reference_cmd(
    ctx: typer.Context,
    name: str,
    version: int = typer.Option(..., "--version", "-v", help="The version the reference belongs to."),
    data: Path | None = typer.Option(None, help="Evaluation rows: a JSON list of lists of numbers."),
    from_capture: str | None = typer.Option(None, help="Or: the inputs captured over this window, e.g. 24h."),
) -> None:
    """Set VERSION's drift reference from evaluation rows or from a captured window."""
    if (data is None) == (from_capture is None):
        raise typer.BadParameter("give either --data or --from-capture")
    obj = ctx_obj(ctx)
    rows = read_json(data, "--data") if data is not None else None
    with obj.client() as c:
        ref = c.set_drift_reference(name, version, rows=rows, from_capture=from_capture)
    emit(
        obj.as_json,
        ref.model_dump(exclude={"features"}),
        f"{name} v{version}: reference of {ref.rows} rows, {len(ref.features)} features",
    )
