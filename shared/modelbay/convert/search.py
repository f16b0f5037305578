"""The variant search (``--optimize auto``): try the compressions, keep the best one the gate passes.

Candidates, each built from the fp32 export and judged by the same gate against
the unpruned fp32 model:

* ``int8`` (dynamic or static, as the pipeline chooses for the model), and
  ``mixed`` precision when plain int8 fails;
* ``int4``: weight-only MatMulNBits (``quantize.quantize_int4``);
* ``pruned R``: structured pruning of a PyTorch model at ratio R
  (``convert.prune``), re-exported, then each of the above on top of it.

Pruning has no recovery fine-tune, so the gate decides how far it goes: ratios
are tried in increasing order and the first one whose fp32 export fails the
gate ends the pruning (larger ratios are recorded as skipped, with the reason).

Each candidate is measured on this machine (size, latency at batch 1 and 32;
the CPU is recorded beside the table). The chosen one is the fastest at batch
32 (``objective="size"``: the smallest) among those that pass; fp32 itself is
the baseline, never the answer: when nothing compressed passes, the push is
refused. A time budget bounds the whole search; what it did not reach is
recorded as skipped.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelbay.convert.data import Feed
from modelbay.convert.gate import Gate, GateFailed, GateReport
from modelbay.convert.measure import profile
from modelbay.convert.mixed import search as mixed_search
from modelbay.convert.prune import KINDS, SCORES
from modelbay.convert.quantize import (
    Int4Options,
    Method,
    QuantOptions,
    int4_candidates,
    preprocess,
    quantizable_nodes,
    quantize,
    quantize_int4,
    scratch_dir,
)
from modelbay.convert.sources import Source
from modelbay.cpu_features import detect
from modelbay.errors import BadRequest, InvalidModel
from modelbay.manifest import QuantizationInfo, TensorSpec

Objective = Literal["latency", "size"]
Progress = Callable[[str, float | None], None]


@dataclass(frozen=True)
class SearchOptions:
    objective: Objective = "latency"
    budget_s: float = 600.0
    prune_ratios: tuple[float, ...] = (0.25, 0.5)
    prune_score: str = "activation"
    prune_kinds: tuple[str, ...] = KINDS
    int4: Int4Options | None = field(default_factory=Int4Options)
    repeats: int = 5  # latency: median of this many runs per batch size
    keep_candidates: bool = False  # leave every candidate's file in <workdir>/search (benchmarks)

    def __post_init__(self) -> None:
        if self.objective not in ("latency", "size"):
            raise BadRequest(f"--objective must be latency or size, not {self.objective!r}")
        if self.budget_s <= 0:
            raise BadRequest(f"the search budget must be positive, not {self.budget_s}s")
        if any(not 0.0 < r < 1.0 for r in self.prune_ratios):
            raise BadRequest(f"pruning ratios are in (0, 1), not {list(self.prune_ratios)}")
        if self.prune_score not in SCORES:
            raise BadRequest(f"--prune-score must be one of {list(SCORES)}, not {self.prune_score!r}")
        unknown = set(self.prune_kinds) - set(KINDS)
        if unknown:
            raise BadRequest(f"unknown pruning kinds {sorted(unknown)}; known: {list(KINDS)}")


def parse_duration(text: str | float | int) -> float:
    """``600``, ``90s``, ``10m``, ``1h`` -> seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    raw = str(text).strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(raw[-1:])
    try:
        value = float(raw[:-1] if scale else raw) * (scale or 1.0)
    except ValueError:
        raise BadRequest(f"a duration is like 600, 90s, 10m or 1h, not {text!r}") from None
    if value <= 0:
        raise BadRequest(f"a duration must be positive, not {text!r}")
    return value


def parse_ratios(text: str) -> tuple[float, ...]:
    """``0.25,0.5`` -> (0.25, 0.5); an empty text means no pruning."""
    try:
        return tuple(sorted(float(p) for p in text.split(",") if p.strip()))
    except ValueError:
        raise BadRequest(f"pruning ratios are comma-separated fractions such as 0.25,0.5, not {text!r}") from None


@dataclass
class Candidate:
    name: str
    prune_ratio: float
    quantization: str  # none, dynamic, static, mixed, int4
    status: str = "pending"  # baseline, passed, failed, skipped, error
    path: Path | None = None
    report: GateReport | None = None
    note: str = ""
    size_bytes: int | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    kept_fp32: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        r: dict[str, Any] = {
            "name": self.name,
            "prune_ratio": self.prune_ratio,
            "quantization": self.quantization,
            "status": self.status,
        }
        if self.report is not None:
            r["gate"] = {k: round(v, 6) for k, v in self.report.int8.items()}
            r["margin"] = round(self.report.margin, 6)
        if self.size_bytes is not None:
            r["size_bytes"] = self.size_bytes
        if self.latency_ms:
            r["latency_ms"] = self.latency_ms
        if self.note:
            r["note"] = self.note
        return r


@dataclass
class SearchInput:
    """What the pipeline knows when the search starts."""

    fp32: Path
    source: Source
    specs: list[TensorSpec]
    example: Feed | None
    output_names: list[str] | None
    method: Method
    opts: QuantOptions
    calibration: list[Feed] | None
    gate: Gate
    work: Path
    mixed_precision: bool = True
    check_atol: float = 1e-4
    check_rtol: float = 1e-3


@dataclass
class SearchResult:
    chosen: Candidate
    candidates: list[Candidate]
    table: dict[str, Any]
    pruning: dict[str, Any] | None = None


def prunable(src: Source) -> str | None:
    """None when ``src`` is a PyTorch module pruning can rewrite, else why not."""
    if src.kind in ("onnx", "sklearn", "torchscript", "exported_program"):
        return f"a {src.kind} model has no PyTorch modules to prune"
    import torch

    if not isinstance(src.obj, torch.nn.Module) or isinstance(src.obj, torch.jit.ScriptModule):
        return "not a PyTorch module"
    return None


class _Search:
    def __init__(self, inp: SearchInput, options: SearchOptions, say: Progress) -> None:
        self.inp, self.o, self.say = inp, options, say
        self.deadline = time.monotonic() + options.budget_s
        self.cands: list[Candidate] = []
        self.feed = inp.gate.data.batches[0]
        self.pruning: dict[str, Any] | None = None

    def over_budget(self) -> bool:
        return time.monotonic() > self.deadline

    def judge(self, c: Candidate, make: Callable[[Path], Any]) -> Candidate:
        """Build ``c`` with ``make(path)``, gate it and measure it; failures become table rows."""
        self.cands.append(c)
        if self.over_budget():
            c.status, c.note = "skipped", f"search budget ({self.o.budget_s:.0f}s) spent"
            return c
        self.say(f"candidate {c.name}", None)
        path = self.inp.work / f"cand-{len(self.cands):02d}.onnx"
        try:
            made = make(path)
            c.path = made if isinstance(made, Path) else path
            c.report = self.inp.gate.check(c.path)
        except (InvalidModel, BadRequest) as e:
            c.status, c.note = "error", e.message[:300]
            return c
        c.status = "passed" if c.report.passed else "failed"
        if not c.report.passed:
            c.note = "; ".join(c.report.failures)
        self.measure(c)
        return c

    def measure(self, c: Candidate) -> None:
        assert c.path is not None
        p = profile(c.path, self.feed, repeats=self.o.repeats)
        c.size_bytes, c.latency_ms = p["size_bytes"], p["latency_ms"]

    def quantized(self, model: Path, ratio: float, prefix: str) -> None:
        """int8 (then mixed on failure), int4 of ``model``."""
        inp = self.inp
        method = inp.method
        if quantizable_nodes(model, method):
            int8 = self.judge(
                Candidate(f"{prefix}int8 {method}", ratio, method),
                lambda p: quantize(model, p, method, inp.opts, inp.calibration),
            )
            if int8.status == "failed" and inp.mixed_precision and ratio == 0.0:
                self.mixed(model, int8)
        if self.o.int4 is not None and int4_candidates(model):
            int4 = self.o.int4
            self.judge(Candidate(f"{prefix}int4", ratio, "int4"), lambda p: quantize_int4(model, p, int4))

    def mixed(self, model: Path, failed: Candidate) -> None:
        inp = self.inp
        c = Candidate("mixed int8/fp32", 0.0, "mixed")
        self.cands.append(c)
        if self.over_budget():
            c.status, c.note = "skipped", f"search budget ({self.o.budget_s:.0f}s) spent"
            return
        assert failed.path is not None
        with scratch_dir() as tmp:
            base, _ = preprocess(model, tmp / "pre.onnx", inp.method)
            out = inp.work / f"cand-{len(self.cands):02d}.onnx"
            res = mixed_search(
                base,
                inp.method,
                inp.opts,
                inp.gate,
                failed.path,
                out,
                tmp,
                inp.calibration,
                self.say,
                first_margin=failed.report.margin if failed.report and inp.gate.task == "embedder" else 0.0,
            )
        if res is None:
            c.status, c.note = "failed", "no mixed precision (up to half the nodes in fp32) passed"
            return
        c.path, c.report, c.kept_fp32, c.status = out, res.report, res.kept_fp32, "passed"
        c.note = f"{len(res.kept_fp32)} node(s) kept in fp32"
        self.measure(c)

    def pruned(self) -> None:
        inp, o = self.inp, self.o
        why = prunable(inp.source)
        if not o.prune_ratios:
            return
        if why is not None:
            self.pruning = {"skipped": why}
            return
        from modelbay.convert.converter import convert
        from modelbay.convert.prune import find_groups, importance, prune

        model = inp.source.obj
        groups = find_groups(model, o.prune_kinds)
        if not groups:
            self.pruning = {"skipped": f"no prunable units ({', '.join(o.prune_kinds)}) found in the model"}
            return
        scored_on = "calibration" if inp.calibration else "evaluation"
        batches = inp.calibration or inp.gate.data.batches
        self.say(f"scoring {len(groups)} unit group(s) ({o.prune_score}, {scored_on} data)", None)
        names = [s.name for s in inp.specs]
        scores = importance(model, groups, batches, names, o.prune_score)
        self.pruning = {"score": o.prune_score, "scored_on": scored_on, "groups": len(groups), "ratios": {}}
        for k, ratio in enumerate(o.prune_ratios):
            res = prune(model, ratio, groups=groups, scores=scores, score=o.prune_score)
            self.pruning["ratios"][str(ratio)] = res.summary()
            tag = f"pruned {ratio:g} "

            def export(p: Path, res: Any = res) -> Path:
                convert(
                    res.model,
                    p,
                    input_spec=inp.specs,
                    example=inp.example,
                    output_names=inp.output_names,
                    samples=inp.gate.data.batches[:2],
                    atol=inp.check_atol,
                    rtol=inp.check_rtol,
                )
                return p

            base = self.judge(Candidate(f"{tag}fp32", ratio, "none", note=_units(res.summary())), export)
            if base.status != "passed":
                for later in o.prune_ratios[k + 1 :]:
                    self.cands.append(
                        Candidate(f"pruned {later:g}", later, "-", "skipped", note=f"pruning {ratio:g} failed the gate")
                    )
                return
            assert base.path is not None
            self.quantized(base.path, ratio, tag)

    def run(self) -> SearchResult:
        inp = self.inp
        fp32 = Candidate("fp32", 0.0, "none", "baseline", inp.fp32)
        fp32.report = inp.gate.check(inp.fp32)
        self.cands.append(fp32)
        self.measure(fp32)
        self.quantized(inp.fp32, 0.0, "")
        self.pruned()
        passing = [c for c in self.cands if c.status == "passed"]
        rows = [c.row() for c in self.cands]
        table: dict[str, Any] = {
            "objective": self.o.objective,
            "budget_s": self.o.budget_s,
            "cpu": detect().as_dict(),
            "candidates": rows,
            **({"pruning": self.pruning} if self.pruning else {}),
        }
        if not passing:
            raise GateFailed(
                "no compressed variant passed the accuracy gate: "
                + "; ".join(f"{c.name}: {c.note or c.status}" for c in self.cands[1:]),
                search=table,
            )
        chosen = min(passing, key=self.key)
        table["chosen"] = chosen.name
        return SearchResult(chosen, self.cands, table, self.pruning)

    def key(self, c: Candidate) -> tuple[float, float]:
        lat = c.latency_ms.get("b32", c.latency_ms.get("b1", 0.0))
        size = float(c.size_bytes or 0)
        return (size, lat) if self.o.objective == "size" else (lat, size)


def _units(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v['before']}->{v['after']}" for k, v in summary.get("units", {}).items())


def run(inp: SearchInput, options: SearchOptions, say: Progress = lambda *_: None) -> SearchResult:
    return _Search(inp, options, say).run()


def quantization_info(res: SearchResult, inp: SearchInput, options: SearchOptions) -> QuantizationInfo:
    """What the manifest says about the chosen variant."""
    c = res.chosen
    extra: dict[str, Any] = {"search": "auto", "variant": c.name}
    if c.prune_ratio:
        extra["pruning"] = (res.pruning or {}).get("ratios", {}).get(str(c.prune_ratio), {"ratio": c.prune_ratio})
    if c.quantization == "int4":
        extra["int4"] = asdict(options.int4) if options.int4 else {}
        return QuantizationInfo(
            method="int4", weight_type="int4 (MatMulNBits)", target_arch=inp.opts.target, extra=extra
        )
    if c.quantization == "none":
        return QuantizationInfo(method="none", extra=extra)
    method = "mixed" if c.quantization == "mixed" else inp.method
    extra["base_method"] = inp.method
    return QuantizationInfo(method=method, kept_fp32_nodes=c.kept_fp32, extra=extra, **inp.opts.info(inp.method))


def keep(res: SearchResult, dst: Path) -> Path:
    """Copy the chosen variant to ``dst`` (the candidates' files die with the work folder)."""
    assert res.chosen.path is not None
    if res.chosen.path.resolve() != dst.resolve():
        shutil.copyfile(res.chosen.path, dst)
    return dst
