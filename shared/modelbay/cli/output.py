"""Everything the CLI prints: tables that fit the terminal, JSON, values, errors and exit codes.

Human output never shows a Python repr (``None``, ``True``, ``['a']``): values go
through ``show``. User text is never read as Rich markup: table cells are ``Text``
and messages pass through ``escape``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import BaseModel
from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import BadRequest, ModelbayError
from ..units import percent, size, truncate, when

# One exit-code policy for every command.
OK = 0
FAILURE = 1  # the server or the environment: a 5xx, an unreachable server, a store error
USAGE = 2  # the caller's mistake: bad flags, bad files, a 4xx answer (click uses 2 for bad flags too)

# used by the command modules; sizes, times and shares are modelbay.units', shared with the TUI
__all__ = ["escape", "percent", "size", "truncate", "when"]


def out() -> Console:
    """stdout, created per call: it follows the terminal width (and COLUMNS) of this invocation."""
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)


# ------------------------------------------------------------------ values
def show(v: Any) -> str:
    """A value as a person reads it: '-' for nothing, yes/no, lists joined, numbers short."""
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple, set, frozenset)):
        return ", ".join(show(x) for x in v) or "-"
    if isinstance(v, dict):
        return ", ".join(f"{k}={show(x)}" for k, x in v.items()) or "-"
    return str(v)


def day(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def number(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


# ------------------------------------------------------------------ tables
@dataclass(frozen=True)
class Col:
    header: str
    flex: bool = False  # may shrink, with an ellipsis, to fit the terminal; the others never wrap or shrink
    right: bool = False


def table(title: str | None, columns: Sequence[Col | str], rows: Iterable[Sequence[Any]]) -> Table:
    """One line per row at any width: key columns keep their full text, flexible ones are cut with '…'."""
    # as wide as its title, so the title never wraps
    t = Table(
        title=escape(title) if title else None,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        title_justify="left",
        min_width=len(title) if title else None,
    )
    for c in columns:
        col = c if isinstance(c, Col) else Col(c)
        t.add_column(
            col.header,
            no_wrap=not col.flex,
            overflow="ellipsis",
            justify="right" if col.right else "left",
            min_width=min(len(col.header), 8) if col.flex else None,
        )
    for row in rows:
        t.add_row(*(Text(show(v), no_wrap=True, overflow="ellipsis") for v in row))
    return t


# ------------------------------------------------------------------ emitting
def plain(data: Any) -> Any:
    """Typed models (and lists/dicts of them) as JSON-ready data."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, (list, tuple)):
        return [plain(x) for x in data]
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    return data


def emit(as_json: bool, data: Any, human: RenderableType | None = None) -> None:
    """``--json``: the data on stdout, nothing else; otherwise the human rendering."""
    if as_json or human is None:
        typer.echo(json.dumps(plain(data), indent=2, default=str))
    else:
        out().print(human)


def note(message: str) -> None:
    """Progress and remarks: stderr, so stdout stays the result."""
    err().print(message)


# ------------------------------------------------------------------ errors
def exit_code(e: BaseException) -> int:
    """The one place that decides: the caller's mistakes are 2, server or environment failures 1."""
    if isinstance(e, typer.BadParameter):
        return USAGE
    if isinstance(e, ModelbayError):
        status = getattr(e, "status", 500)
        return USAGE if 400 <= status < 500 else FAILURE
    return FAILURE


def _describe(e: BaseException) -> tuple[str, str, dict[str, Any]]:
    """(tag, message, JSON body) of an error."""
    if isinstance(e, ModelbayError):
        status = getattr(e, "status", 500)
        # an answer from a server says its status; a local check says what it checked
        tag = f"{status} {e.code}" if type(e).__name__ == "ApiError" else e.code
        return tag, e.message, {"error": e.message, "code": e.code, "status": status, **e.details}
    if isinstance(e, OSError):
        text = f"{e.strerror or e}" + (f": {e.filename}" if getattr(e, "filename", None) else "")
        return "os_error", text, {"error": text, "code": "os_error"}
    text = f"{type(e).__name__}: {e}"
    return "internal", text, {"error": text, "code": "internal"}


def fail(e: BaseException, as_json: bool = False) -> NoReturn:
    """Print an error (and a refusing gate's numbers) without a traceback, then exit by the policy."""
    tag, message, body = _describe(e)
    console = err()
    if as_json:
        console.print_json(json.dumps(body, default=str))
    else:
        console.print(f"[red]error[/] ({escape(tag)}): {escape(message)}", soft_wrap=True)
        gate = body.get("gate")
        if isinstance(gate, dict):
            console.print(gate_table(gate))
        search = body.get("search")
        if isinstance(search, dict):
            console.print(search_table(search))
    raise typer.Exit(exit_code(e))


def gate_table(gate: dict[str, Any]) -> Table:
    """The accuracy gate's numbers: each metric fp32 and int8, the thresholds, the verdict."""
    verdict = "PASS" if gate.get("passed") else "FAIL"
    title = f"accuracy gate ({gate.get('task', '?')}, {gate.get('samples', '?')} samples): {verdict}"
    rows: list[list[Any]] = []
    for k, v in (gate.get("int8") or {}).items():
        f = (gate.get("fp32") or {}).get(k)
        rows.append([k, "" if f is None else f"{f:.4f}", f"{v:.4f}"])
    for k, v in (gate.get("thresholds") or {}).items():
        if v is not None:
            rows.append([f"threshold {k}", "", f"{v:.4g}"])
    return table(title, [Col("metric", flex=True), Col("fp32", right=True), Col("int8", right=True)], rows)


def search_table(search: dict[str, Any]) -> Table:
    """The variant search: each candidate's verdict, gate numbers, size and latency; the chosen one marked."""
    chosen = search.get("chosen")
    title = f"variant search (objective {search.get('objective', '?')}): chose {chosen or 'nothing'}"
    rows: list[list[Any]] = []
    for c in search.get("candidates") or []:
        gate = ", ".join(f"{k} {v:.4f}" for k, v in (c.get("gate") or {}).items() if k != "agreement")
        lat = c.get("latency_ms") or {}
        ms = ["" if b not in lat else f"{lat[b]:.2f}" for b in ("b1", "b32")]
        name = ("* " if c.get("name") == chosen else "") + str(c.get("name", ""))
        rows.append([name, c.get("status", ""), gate, size(c["size_bytes"]) if "size_bytes" in c else "", *ms])
    cols = [
        Col("candidate"),
        Col("status"),
        Col("gate", flex=True),
        Col("size", right=True),
        Col("b1 ms", right=True),
        Col("b32 ms", right=True),
    ]
    return table(title, cols, rows)


# ------------------------------------------------------------------ the caller's files
def read_text(path: Path | str, what: str) -> str:
    """A file the caller named: a missing or unreadable one is their mistake (exit 2), not ours."""
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BadRequest(f"{what} {path}: {getattr(e, 'strerror', None) or e}") from None


def read_json(path: Path | str, what: str) -> Any:
    text = read_text(path, what)
    try:
        return json.loads(text)
    except ValueError as e:
        raise BadRequest(f"{what} {path} is not JSON: {e}") from None


def stdin_text() -> str:
    return sys.stdin.read()
