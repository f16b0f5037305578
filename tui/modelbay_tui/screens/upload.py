"""Upload a model: pick a file (in the tree, or by path), name it, choose quantization, evaluation
and calibration data, the task and labels; watch it go.

Everything goes through ``modelbay.convert.pipeline.push``, the function ``modelbay push``
calls: it decides between a plain upload and a conversion, and reports typed stages. The
fields are those of ``modelbay push`` of the same names, and mean the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DirectoryTree, Footer, Header, Input, Label, ProgressBar, Select, Static

from modelbay.convert.pipeline import PushResult, Stage, StageEvent, Status, push
from modelbay.convert.task import user_metadata
from modelbay.errors import ModelbayError

from .. import format as fmt
from .base import BaseScreen

# every format ``convert.sources.load_source`` reads: ONNX, torch.export, TorchScript or a state_dict, scikit-learn
MODEL_SUFFIXES = (".onnx", ".pt2", ".pt", ".pth", ".ts", ".torchscript", ".jit", ".pkl", ".pickle", ".joblib")
# a placeholder must be something the program itself accepts (tests parse it)
SPEC_PLACEHOLDER = "x:float32:[batch,4]"
TASKS = [
    ("task: auto", ""),
    ("classifier", "classifier"),
    ("embedder", "embedder"),
    ("tagger", "tagger"),
    ("raw", "raw"),
]
MARKS = {
    Status.DONE: "[green]✓[/]",
    Status.RUNNING: "[yellow]…[/]",
    Status.FAILED: "[red]✗[/]",
    Status.SKIPPED: "[dim]-[/]",
}


class ModelTree(DirectoryTree):
    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in MODEL_SUFFIXES)]


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
        self.stages: dict[Stage, Status] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="up-body"):
            yield ModelTree(self.root, id="up-tree")
            with VerticalScroll(id="up-form"):
                yield Label("file: pick one in the tree, or type a path", id="up-file")
                yield Input(placeholder="path to a model file or a folder (enter)", id="up-path", compact=True)
                yield Label("name · aliases (comma separated)", classes="field")
                with Horizontal(classes="pair"):
                    yield Input(placeholder="model name", id="up-name", compact=True)
                    yield Input(placeholder="e.g. production", id="up-aliases", compact=True)
                yield Label("quantization", classes="field")
                yield Select(
                    [
                        ("fp32 (no quantization)", "none"),
                        ("int8, method chosen by model", "auto"),
                        ("int8 dynamic", "dynamic"),
                        ("int8 static (needs calibration)", "static"),
                    ],
                    value="none",
                    allow_blank=False,
                    id="up-quant",
                    compact=True,
                )
                yield Label("evaluation · calibration data (.npz/.npy)", classes="field")
                with Horizontal(classes="pair"):
                    yield Input(placeholder="eval.npz (+labels)", id="up-eval", compact=True)
                    yield Input(placeholder="calib.npz (static int8)", id="up-calib", compact=True)
                yield Label("task (auto: labels make a classifier) · labels", classes="field")
                with Horizontal(classes="pair"):
                    yield Select(TASKS, value="", allow_blank=False, id="up-task", compact=True)
                    yield Input(placeholder="e.g. cat,dog,bird", id="up-labels", compact=True)
                yield Label("state_dict factory (module:fn) · input spec", classes="field")
                with Horizontal(classes="pair"):
                    yield Input(placeholder="pkg.models:make_net", id="up-factory", compact=True)
                    yield Input(placeholder=SPEC_PLACEHOLDER, id="up-spec", compact=True)
                yield Button("Upload ^u", id="up-go", variant="primary", compact=True)
                yield Static("", id="up-stages")
                yield ProgressBar(total=100, show_eta=False, id="up-progress")
                yield Static("", id="up-result")
        yield Footer()

    def on_mount(self) -> None:
        self._render_stages()
        self.query_one("#up-tree").focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.choose(Path(event.path))

    def allowed(self, path: Path) -> bool:
        """Whether ``path`` may be pushed: anything, unless the app confines uploads to the root (say so if not)."""
        if not self.app.confine_uploads or path.resolve().is_relative_to(self.root.resolve()):
            return True
        self.notify(f"only files in {self.root} can be uploaded from this session", severity="error")
        return False

    def choose(self, path: Path) -> None:
        """Take ``path`` as the model file; the name defaults to its stem."""
        if not self.allowed(path):
            return
        self.file = path
        what = "Hugging Face folder" if path.is_dir() else fmt.size(self.file.stat().st_size)
        self.query_one("#up-file", Label).update(f"file: [b]{escape(self.file.name)}[/] ({what})")
        name = self.query_one("#up-name", Input)
        if not name.value:
            stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.file.stem.lower()).strip("-.")
            name.value = stem[:64] or "model"
        name.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "up-path":
            return
        text = event.value.strip()
        if not text:
            return
        path = Path(text).expanduser()
        path = path if path.is_absolute() else (self.root / path if self.app.confine_uploads else Path.cwd() / path)
        if not self.allowed(path):
            return
        if path.is_dir() and (path / "config.json").is_file():  # a save_pretrained folder is the model itself
            self.choose(path)
        elif path.is_dir():  # the tree moves there: its models can be picked
            self.query_one("#up-tree", ModelTree).path = path
            self.query_one("#up-tree", ModelTree).focus()
        elif path.is_file():
            self.choose(path)
        else:
            self.notify(f"no such file or folder: {path}", severity="error")

    def _render_stages(self) -> None:
        self.query_one("#up-stages", Static).update(
            " ".join(f"{MARKS[st] if (st := self.stages.get(s)) else '[dim]·[/]'} {s.value}" for s in Stage)
        )

    def on_stage(self, event: StageEvent) -> None:
        """A typed event from the push pipeline (on the UI thread)."""
        self.stages[event.stage] = event.status
        self._render_stages()
        if event.sent is not None and event.total:
            self.query_one("#up-progress", ProgressBar).update(total=event.total, progress=event.sent)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "up-go":
            self.action_upload()

    def _path(self, field: str, what: str) -> tuple[Path | None, bool]:
        """A data path from a field: (None, True) when empty, (None, False) after saying it does not exist."""
        text = self.query_one(field, Input).value.strip()
        if not text:
            return None, True
        path = Path(text).expanduser()
        if self.app.confine_uploads and not path.is_absolute():
            path = self.root / path
        if not self.allowed(path):
            return None, False
        if not path.exists():
            self.notify(f"no such {what}: {path}", severity="error")
            return None, False
        return path, True

    def action_upload(self) -> None:
        if self.busy:
            return
        name = self.query_one("#up-name", Input).value.strip()
        aliases = [a.strip() for a in self.query_one("#up-aliases", Input).value.split(",") if a.strip()]
        quant = str(self.query_one("#up-quant", Select).value)
        factory = self.query_one("#up-factory", Input).value.strip() or None
        spec = self.query_one("#up-spec", Input).value.strip() or None
        task = str(self.query_one("#up-task", Select).value or "") or None
        labels = self.query_one("#up-labels", Input).value.strip() or None
        if self.file is None:
            self.notify("pick a model file in the tree first", severity="warning")
            return
        if not name:
            self.notify("give the model a name", severity="warning")
            return
        eval_data, ok = self._path("#up-eval", "evaluation data")
        calibration, ok2 = self._path("#up-calib", "calibration data")
        if not (ok and ok2):
            return
        folder_options: dict[str, Any] = {"folder_task": task} if self.file.is_dir() else {}
        try:
            metadata = user_metadata(task=None if folder_options else task, labels=labels)
        except ModelbayError as e:
            self.notify(e.message, severity="error")
            return
        self.busy = True
        self.stages = {}
        self._render_stages()
        self.query_one("#up-result", Static).update("")
        file = self.file
        app = self.app

        def job() -> PushResult:
            return push(
                self.client,
                factory or file,
                name=name,
                aliases=aliases,
                metadata=metadata,
                quantize_mode=quant,  # type: ignore[arg-type]
                eval_data=eval_data,
                calibration=calibration,
                state_dict=file if factory else None,
                input_spec=spec,
                events=lambda e: app.call_from_thread(self.on_stage, e),
                **folder_options,
            )

        self.api(job, then=self._done, failed=self._failed, group="upload", exclusive=True)

    def _done(self, res: PushResult) -> None:
        m = res.manifest
        self.busy = False
        gate_txt = f"\ngate: {escape(_numbers(res.gate.as_dict()))}" if res.gate is not None else ""
        self.query_one("#up-result", Static).update(
            f"[green]registered[/] [b]{escape(m.name)}[/] v{m.version}  {fmt.size(m.size)}  sha256 {m.sha256[:12]}"
            f"  {fmt.precision(m.quantization)}{gate_txt}"
        )
        self.notify(f"registered {m.name} v{m.version}")
        self.query_one("#up-form").scroll_end(animate=False)

    def _failed(self, e: Exception) -> None:
        self.busy = False
        result = self.query_one("#up-result", Static)
        gate = e.details.get("gate") if isinstance(e, ModelbayError) else None
        if isinstance(gate, dict):
            result.update(f"[red b]refused by the accuracy gate[/]\n{escape(_numbers(gate))}")
        elif isinstance(e, ModelbayError):
            result.update(f"[red]upload failed: {getattr(e, 'status', '')} {escape(e.code)}[/]\n{escape(e.message)}")
        else:
            result.update(f"[red]upload failed:[/] {escape(f'{type(e).__name__}: {e}')}")
        self.query_one("#up-form").scroll_end(animate=False)


def _numbers(d: dict[str, Any]) -> str:
    """A gate report (fp32/int8 per metric, thresholds, failures) as a few readable lines."""
    lines = []
    for k, v in (d.get("int8") or {}).items():
        f = (d.get("fp32") or {}).get(k)
        lines.append(f"{k}: fp32 {f:.4f} → int8 {v:.4f}" if isinstance(f, (int, float)) else f"{k}: int8 {v:.4f}")
    if d.get("thresholds"):
        lines.append(
            "thresholds: "
            + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in d["thresholds"].items()
                if v is not None
            )
        )
    lines += [f"✗ {f}" for f in d.get("failures") or []]
    if d.get("samples"):
        lines.append(f"{d['samples']} samples, {d.get('task', '')} {d.get('metric', '')}".strip())
    return "\n".join(lines) or ", ".join(f"{k}={v}" for k, v in d.items())
