"""Send an input to any version or alias; see the output and where the time went."""

from __future__ import annotations

import json
import math
import random
import time
from typing import Any

from rich.json import JSON
from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Select, Static, TextArea

from modelbay.manifest import ImagePreprocessing, Manifest
from modelbay.metrics.loadgen import sample_instance
from modelbay.schemas import ModelDetail, Resolution

from ..digit import DigitGrid
from .base import BaseScreen

MAX_GRID = 32
CHAT_EXAMPLES = ("What is the capital of France?", "Write a haiku about the sea.", "The three primary colors are")


def input_kind(m: Manifest) -> str:
    if m.task == "generator":
        return "chat"
    pre = m.preprocessing
    if pre is not None and pre.kind in ("text", "string"):
        return "text"
    if pre is not None and pre.kind == "image" and pre.channels == 1 and max(pre.height, pre.width) <= MAX_GRID:
        return "grid"
    return "json"


class PlaygroundScreen(BaseScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "send", "Send", priority=True),
        # priority: the text box and the JSON editor bind ^e to end-of-line, which hid the example there
        Binding("ctrl+e", "example", "Example", priority=True),
    ]

    def __init__(self, model: str, ref: str | None = None) -> None:
        super().__init__(name=f"playground-{model}")
        self.model = model
        self.ref = ref
        self.detail: ModelDetail | None = None
        self.manifest: Manifest | None = None
        self.kind = "json"
        self.last_timing: dict[str, float] = {}
        self._examples = 0  # seeds: examples differ each time, yet a session is reproducible
        self.messages: list[dict[str, str]] = []  # the chat so far (language models)
        self.reply = ""  # the answer being streamed

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="pg-bar"):
            yield Select([], prompt="version or alias", id="pg-target", allow_blank=True, compact=True)
            yield Button("Send ^s", id="pg-send", variant="primary", compact=True)
        with Horizontal(id="pg-body"):
            with Vertical(id="pg-input"):
                yield Static("", id="pg-hint", classes="status")
                yield Input(placeholder="text to classify or embed", id="pg-text", compact=True)
                yield DigitGrid(id="pg-grid")
                yield TextArea("", language="json", id="pg-json")
            with VerticalScroll(id="pg-output"):
                yield Static("output appears here", id="pg-result")
        yield Static("", id="pg-latency", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        for w in ("#pg-text", "#pg-grid", "#pg-json"):
            self.query_one(w).display = False
        super().on_mount()

    def refresh_data(self, quiet: bool = False) -> None:
        ref = self.ref

        def load() -> tuple[ModelDetail, Resolution | None]:
            # no version picked yet: the server says what the bare name serves (production, else the latest)
            return self.client.model(self.model), None if ref else self.client.resolve(self.model)

        self.api(load, then=self._targets, group="pg-load", exclusive=True, quiet=quiet)

    def _targets(self, loaded: tuple[ModelDetail, Resolution | None]) -> None:
        detail, default = loaded
        self.detail = detail
        opts = [(f"{a} → v{v}", a) for a, v in sorted(detail.aliases.items())]
        opts += [(f"v{m.version}", str(m.version)) for m in sorted(detail.versions, key=lambda m: -m.version)]
        sel = self.query_one("#pg-target", Select)
        sel.set_options(opts)
        values = [v for _, v in opts]
        want = self.ref
        if want not in values and default is not None:
            want = default.alias or str(default.version)
        if want in values:
            sel.value = want

    def _manifest_for(self, ref: str) -> Manifest | None:
        if not self.detail:
            return None
        v = int(ref) if ref.isdigit() else self.detail.aliases.get(ref)
        return None if v is None else self.detail.manifest(v)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.value is Select.BLANK or event.value is None:
            return
        self.ref = str(event.value)
        self.manifest = self._manifest_for(self.ref)
        if self.manifest is None:
            return
        self._configure(self.manifest)

    def _configure(self, m: Manifest) -> None:
        self.kind = input_kind(m)
        text, grid, js = (self.query_one(w) for w in ("#pg-text", "#pg-grid", "#pg-json"))
        text.display, grid.display, js.display = self.kind in ("text", "chat"), self.kind == "grid", self.kind == "json"
        labels = f" → {', '.join(m.labels[:4])}{'…' if m.labels and len(m.labels) > 4 else ''}" if m.labels else ""
        hint = {
            "text": f"{m.task}: type a sentence{labels} (^e: an example)",
            # the digits model learnt bright strokes on a dark ground (load_digits); so does the grid
            "grid": "draw bright ink on black: arrows+space or mouse, x clears, ^e example",
            "json": "instances as JSON (^e: a fresh example)",
            "chat": "chat: type a message, enter sends; tokens stream in (^e: an example)"
            if m.generation is not None and m.generation.chat_template
            else "text to continue, enter sends; tokens stream in (^e: an example)",
        }[self.kind]
        self.messages, self.reply = [], ""
        placeholder = "a message" if self.kind == "chat" else "text to classify or embed"
        self.query_one("#pg-text", Input).placeholder = placeholder
        self.query_one("#pg-hint", Static).update(escape(f"v{m.version} {hint}"))
        if self.kind == "grid" and isinstance(m.preprocessing, ImagePreprocessing):
            pre = m.preprocessing
            self.query_one("#pg-grid", DigitGrid).resize(pre.height, pre.width, int(pre.max_value))
            grid.focus()
        elif self.kind == "json":
            self.action_example()
            js.focus()
        else:
            text.focus()

    def action_example(self) -> None:
        """A fresh example input for the kind of input shown: JSON from the signature, a sentence, a digit."""
        if self.manifest is None:
            return
        rng = random.Random(self._examples)
        self._examples += 1
        if self.kind == "json":
            self.query_one("#pg-json", TextArea).text = json.dumps([sample_instance(self.manifest, rng)])
        elif self.kind == "text":
            self.query_one("#pg-text", Input).value = str(sample_instance(self.manifest, rng))
        elif self.kind == "chat":
            self.query_one("#pg-text", Input).value = rng.choice(CHAT_EXAMPLES)
        else:
            self.query_one("#pg-grid", DigitGrid).draw_example(str((self._examples - 1) % 10))

    def _instances(self) -> list[Any] | None:
        if self.kind == "text":
            text = self.query_one("#pg-text", Input).value.strip()
            if not text:
                self.notify("type some text first", severity="warning")
                return None
            return [text]
        if self.kind == "grid":
            grid = self.query_one("#pg-grid", DigitGrid)
            if grid.empty:
                self.notify("draw a digit first (arrows + space), or ^e for an example", severity="warning")
                return None
            return [grid.values()]
        try:
            data = json.loads(self.query_one("#pg-json", TextArea).text or "null")
        except ValueError as e:
            self.notify(f"not JSON: {e}", severity="error")
            return None
        if not isinstance(data, list):
            self.notify("give a JSON list of instances", severity="error")
            return None
        return data

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "pg-send":
            self.action_send()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_send()

    def action_send(self) -> None:
        if not self.ref:
            self.notify("pick a version or alias", severity="warning")
            return
        if self.kind == "chat":
            self._chat()
            return
        instances = self._instances()
        if instances is None:
            return
        ref = self.ref

        def call():
            t0 = time.perf_counter()
            p = self.client.predict(self.model, ref, instances)
            total = (time.perf_counter() - t0) * 1000
            body = {"model": p.model, "version": p.version, "predictions": p.predictions, "instances": instances}
            return body, total, p.server_timing

        self.query_one("#pg-latency", Static).update("sending…")
        self.api(call, then=self._result, group="pg-send", exclusive=True, failed=lambda e: self._failed(e))

    def _chat(self) -> None:
        """Send the message (with the conversation, through the chat template) and stream the answer."""
        box = self.query_one("#pg-text", Input)
        text = box.value.strip()
        if not text:
            self.notify("type a message first", severity="warning")
            return
        box.value = ""
        gen = self.manifest.generation if self.manifest is not None else None
        chat = gen is not None and gen.chat_template is not None
        if chat:
            self.messages.append({"role": "user", "content": text})
        ask: dict[str, Any] = {"messages": list(self.messages)} if chat else {"prompt": text}
        self.reply = ""
        target = f"{self.model}:{self.ref}" if not str(self.ref).isdigit() else f"{self.model}@{self.ref}"
        app = self.app
        shown = self._transcript(text if not chat else None)

        def call() -> tuple[str, str | None, float]:
            return self.client.stream_text(target, lambda text: app.call_from_thread(self._piece, shown, text), **ask)

        self.query_one("#pg-latency", Static).update("generating…")
        self.api(call, then=self._chat_done, group="pg-send", exclusive=True, failed=lambda e: self._failed(e))

    def _transcript(self, prompt: str | None) -> Text:
        t = Text()
        for m in self.messages:
            t.append(f"{m['role']}: ", style="bold cyan" if m["role"] == "user" else "bold green")
            t.append(m["content"] + "\n")
        if prompt is not None:
            t.append(prompt, style="bold")
        else:
            t.append("assistant: ", style="bold green")
        return t

    def _piece(self, head: Text, text: str) -> None:
        self.reply += text
        self.query_one("#pg-result", Static).update(head + Text(self.reply))

    def _chat_done(self, res: tuple[str, str | None, float]) -> None:
        reply, finish, rate = res
        if self.manifest is not None and self.manifest.generation and self.manifest.generation.chat_template:
            self.messages.append({"role": "assistant", "content": reply})
        self.query_one("#pg-latency", Static).update(f"[b]{rate:.1f} tokens/s[/] · {finish or 'ended'}")
        self.last_timing = {"tokens_per_s": rate}

    def _failed(self, e: Exception) -> None:
        head = f"{getattr(e, 'status', '')} {getattr(e, 'code', type(e).__name__)}".strip()
        self.query_one("#pg-result", Static).update(f"[red]{escape(head)}[/]\n{escape(getattr(e, 'message', str(e)))}")
        self.query_one("#pg-latency", Static).update("")

    def _result(self, res) -> None:
        body, total, phases = res
        preds = body.pop("predictions")
        instances = body.pop("instances")
        body["predictions"] = preds
        if preds and all(_is_vector(p) for p in preds):  # an embedding: 384 lines of JSON help nobody
            self.query_one("#pg-result", Static).update(vectors_summary(body))
        elif preds and all(_is_spans(p) for p in preds) and all(isinstance(t, str) for t in instances):
            self.query_one("#pg-result", Static).update(spans_text(instances, preds))
        else:
            self.query_one("#pg-result", Static).update(JSON(json.dumps(body)[:20000]))
        short = {"preprocess": "pre", "inference": "infer", "postprocess": "post", "total": "server"}
        parts = [f"[b]{total:.1f} ms[/] round trip"]
        parts += [f"{short.get(k, k)} {v:.1f}" for k, v in phases.items() if v or k in ("inference", "total")]
        self.query_one("#pg-latency", Static).update(" · ".join(parts))
        self.last_timing = {"round_trip_ms": total, **phases}


VECTOR_MIN = 16  # a list of more numbers than this is a vector to summarise, not a few scores to list


def _is_vector(p: Any) -> bool:
    return isinstance(p, list) and len(p) > VECTOR_MIN and all(isinstance(v, (int, float)) for v in p)


def _is_spans(p: Any) -> bool:
    return isinstance(p, list) and all(isinstance(s, dict) and {"entity", "start", "end"} <= set(s) for s in p)


SPAN_STYLES = ["bold black on yellow", "bold black on cyan", "bold black on green", "bold black on magenta"]


def spans_text(texts: list[str], predictions: list[list[dict[str, Any]]]) -> Text:
    """A tagger's answer: each text with its entity spans highlighted, then the spans with their scores."""
    out = Text()
    styles: dict[str, str] = {}
    for text, spans in zip(texts, predictions):
        line = Text(text)
        for s in spans:
            style = styles.setdefault(str(s["entity"]), SPAN_STYLES[len(styles) % len(SPAN_STYLES)])
            line.stylize(style, int(s["start"]), int(s["end"]))
        out.append_text(line)
        out.append("\n")
        for s in spans:
            out.append(f"  {text[s['start'] : s['end']]!r} ", style=styles[str(s["entity"])])
            out.append(f" {s['entity']} {float(s.get('score', 0.0)):.3f}  [{s['start']}:{s['end']}]\n")
        if not spans:
            out.append("  (no entities)\n", style="dim")
    return out


def vectors_summary(body: dict[str, Any]) -> Text:
    """Each vector as its size, norm and first values (the whole of it: --json on the CLI, or the API)."""
    out = Text(f"{body['model']} v{body['version']}: {len(body['predictions'])} vector(s)\n", style="bold")
    for i, p in enumerate(body["predictions"]):
        norm = math.sqrt(sum(v * v for v in p))
        head = " ".join(f"{v:+.3f}" for v in p[:6])
        out.append(f"#{i}  {len(p)} dims  norm {norm:.3f}\n    [{head} …]\n")
    return out
