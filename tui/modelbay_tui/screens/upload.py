"""Upload a model: pick a file, name it, choose quantization and evaluation data, watch it go.

ONNX files go straight through ``Client.push`` (the same call as ``modelbay push``).
PyTorch files (.pt2, TorchScript, a state_dict with its factory) and quantization go
through ``modelbay.convert.pipeline.prepare`` when that package is installed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import (Button, DirectoryTree, Footer, Header, Input, Label, ProgressBar, Select, Static)

from modelbay.manifest import VersionMetadata

from .. import format as fmt
from .base import BaseScreen

MODEL_SUFFIXES = (".onnx", ".pt2", ".pt", ".pth", ".ts", ".torchscript")
STAGES = ("convert", "quantize", "gate", "upload", "register")


class ModelTree(DirectoryTree):
    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")
                and (p.is_dir() or p.suffix.lower() in MODEL_SUFFIXES)]


def convert_pipeline():
    """``modelbay.convert.pipeline`` if the convert extra is installed, else None."""
    try:
        return importlib.import_module("modelbay.convert.pipeline")
    except ImportError:
        return None


class GateRefused(Exception):
    def __init__(self, numbers: dict[str, Any]) -> None:
        super().__init__("the accuracy gate refused the quantized model")
        self.numbers = numbers


class UploadScreen(BaseScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+u", "upload", "Upload", priority=True),
    ]

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(name="upload")
        self.root = Path(root or Path.cwd())
        self.file: Path | None = None
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="up-body"):
            yield ModelTree(self.root, id="up-tree")
            with VerticalScroll(id="up-form"):
                yield Label("file: pick one in the tree (enter)", id="up-file")
                yield Label("name", classes="field")
                yield Input(placeholder="model name", id="up-name", compact=True)
                yield Label("aliases (comma separated)", classes="field")
                yield Input(placeholder="aliases, e.g. production", id="up-aliases", compact=True)
                yield Label("quantization", classes="field")
                yield Select([("fp32 (no quantization)", "none"), ("int8, method chosen by model", "auto"),
                              ("int8 dynamic", "dynamic"), ("int8 static (needs calibration)", "static")],
                             value="none", allow_blank=False,
                             id="up-quant", compact=True)
                yield Label("evaluation data", classes="field")
                yield Input(placeholder="evaluation data (.npz/.json), optional", id="up-eval", compact=True)
                yield Label("state_dict factory (module:fn) · input spec", classes="field")
                with Horizontal(classes="pair"):
                    yield Input(placeholder="pkg.models:make_net", id="up-factory", compact=True)
                    yield Input(placeholder="x:float32[batch,4]", id="up-spec", compact=True)
                yield Button("Upload ^u", id="up-go", variant="primary", compact=True)
                yield Static("", id="up-stages")
                yield ProgressBar(total=100, show_eta=False, id="up-progress")
                yield Static("", id="up-result")
        yield Footer()

    def on_mount(self) -> None:
        self._stages({})
        self.query_one("#up-tree").focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.file = Path(event.path)
        self.query_one("#up-file", Label).update(f"file: [b]{self.file.name}[/] ({fmt.size(self.file.stat().st_size)})")
        name = self.query_one("#up-name", Input)
        if not name.value:
            stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.file.stem.lower()).strip("-.")
            name.value = stem[:64] or "model"
        name.focus()

    def _stages(self, state: dict[str, str]) -> None:
        marks = {"done": "[green]✓[/]", "run": "[yellow]…[/]", "fail": "[red]✗[/]", "skip": "[dim]-[/]"}
        self.query_one("#up-stages", Static).update(
            " ".join(f"{marks.get(state.get(s, ''), '[dim]·[/]')} {s}" for s in STAGES))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "up-go":
            self.action_upload()

    def action_upload(self) -> None:
        if self.busy:
            return
        name = self.query_one("#up-name", Input).value.strip()
        aliases = [a.strip() for a in self.query_one("#up-aliases", Input).value.split(",") if a.strip()]
        quant = str(self.query_one("#up-quant", Select).value)
        eval_text = self.query_one("#up-eval", Input).value.strip()
        eval_data = Path(eval_text).expanduser() if eval_text else None
        factory = self.query_one("#up-factory", Input).value.strip() or None
        spec = self.query_one("#up-spec", Input).value.strip() or None
        if self.file is None:
            self.notify("pick a model file in the tree first", severity="warning")
            return
        if not name:
            self.notify("give the model a name", severity="warning")
            return
        if eval_data is not None and not eval_data.is_file():
            self.notify(f"no such evaluation file: {eval_data}", severity="error")
            return
        onnx = self.file.suffix.lower() == ".onnx"
        pipeline = convert_pipeline()
        if pipeline is None and (not onnx or quant != "none"):
            what = "converting PyTorch files" if not onnx else "quantization"
            self.notify(f"{what} needs modelbay.convert, which is not installed here: "
                        "pip install 'modelbay[convert]'. Plain ONNX uploads work without it.",
                        severity="error", timeout=8)
            return
        self.busy = True
        self.query_one("#up-result", Static).update("")
        state: dict[str, str] = {}
        file = self.file

        def set_stage(stage: str, value: str) -> None:
            state[stage] = value
            self.app.call_from_thread(self._stages, dict(state))

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self.query_one("#up-progress", ProgressBar).update, total=total or 1,
                                      progress=done)

        def job():
            try:
                if pipeline is not None and (not onnx or quant != "none"):
                    prepared = _prepare(pipeline, file, name, quant, eval_data, factory, spec, set_stage)
                    gate = prepared.gate.as_dict() if prepared.gate is not None else None
                    set_stage("upload", "run")
                    m = pipeline.publish(prepared, client=self.client, aliases=aliases, progress=progress)[-1]
                else:
                    for s in ("convert", "quantize", "gate"):
                        set_stage(s, "skip")
                    set_stage("upload", "run")
                    gate = None
                    m = self.client.push(file, name, VersionMetadata(), {}, aliases, progress=progress)
                set_stage("upload", "done")
                set_stage("register", "done")
                return m, gate
            except GateRefused:
                set_stage("gate", "fail")
                raise
            except Exception:
                for s, v in list(state.items()):
                    if v == "run":
                        set_stage(s, "fail")
                raise

        self.api(job, then=self._done, failed=self._failed, group="upload", exclusive=True)

    def _done(self, res) -> None:
        m, gate = res
        self.busy = False
        gate_txt = f"\ngate: {_numbers(gate)}" if gate else ""
        self.query_one("#up-result", Static).update(
            f"[green]registered[/] [b]{m.name}[/] v{m.version}  {fmt.size(m.size)}  sha256 {m.sha256[:12]}"
            f"  {fmt.precision(m.quantization.model_dump() if m.quantization else None)}{gate_txt}")
        self.notify(f"registered {m.name} v{m.version}")
        self.query_one("#up-form").scroll_end(animate=False)

    def _failed(self, e: Exception) -> None:
        self.busy = False
        result = self.query_one("#up-result", Static)
        if isinstance(e, GateRefused):
            result.update(f"[red b]refused by the accuracy gate[/]\n{_numbers(e.numbers)}")
        elif hasattr(e, "status"):
            result.update(f"[red]upload failed: {e.status} {e.code}[/]\n{e.message}")
        else:
            result.update(f"[red]upload failed:[/] {type(e).__name__}: {e}")
        self.query_one("#up-form").scroll_end(animate=False)


def _numbers(d: dict[str, Any]) -> str:
    """A gate report (fp32/int8 per metric, thresholds, failures) as a few readable lines."""
    lines = []
    for k, v in (d.get("int8") or {}).items():
        f = (d.get("fp32") or {}).get(k)
        lines.append(f"{k}: fp32 {f:.4f} → int8 {v:.4f}" if isinstance(f, (int, float)) else f"{k}: int8 {v:.4f}")
    if d.get("thresholds"):
        lines.append("thresholds: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in d["thresholds"].items() if v is not None))
    lines += [f"✗ {f}" for f in d.get("failures") or []]
    if d.get("samples"):
        lines.append(f"{d['samples']} samples, {d.get('task', '')} {d.get('metric', '')}".strip())
    return "\n".join(lines) or ", ".join(f"{k}={v}" for k, v in d.items())


def _prepare(pipeline, file: Path, name: str, quant: str, eval_data: Path | None, factory: str | None,
             input_spec: str | None, set_stage):
    """``modelbay.convert.pipeline.prepare``: the same conversion, quantization and gate as ``modelbay push``."""
    import tempfile

    stage_of = {"convert": "convert", "evaluat": "gate", "quantiz": "quantize", "plain int8": "gate",
                "measur": "gate"}

    def say(message: str, fraction: float | None = None) -> None:
        for prefix, stage in stage_of.items():
            if message.startswith(prefix):
                order = STAGES.index(stage)
                for earlier in STAGES[:order]:
                    if earlier != "upload":
                        set_stage(earlier, "done")
                set_stage(stage, "run")
                return

    set_stage("convert", "run")
    model: Any = factory or file
    work = Path(tempfile.mkdtemp(prefix="modelbay-tui-"))
    try:
        prepared = pipeline.prepare(model, name=name, workdir=work, quantize_mode=quant, eval_data=eval_data,
                                    state_dict=file if factory else None, input_spec=input_spec or None,
                                    progress=say)
    except Exception as e:
        gate = (getattr(e, "details", None) or {}).get("gate")
        if gate:
            raise GateRefused(gate) from e
        raise
    for s in ("convert", "quantize", "gate"):
        set_stage(s, "done" if s != "quantize" or quant != "none" else "skip")
    return prepared
