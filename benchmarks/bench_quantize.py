"""Size, latency and gate numbers of the example models, fp32 vs int8.

    python benchmarks/bench_quantize.py [--variants] [--json out.json] [--repeats N]

Builds the examples (or takes them from ~/.cache/modelbay/examples), then times
both models at batch 1 and 32 with onnxruntime on this machine (median of
``--repeats`` runs after a warm-up). ``--variants`` also quantizes MiniLM under
each per-CPU option (per-tensor vs per-channel, reduce_range, compact kept
weights) and reports minimum/mean cosine vs PyTorch, size and batch-32 latency:
the measurements behind the choices in ``modelbay.convert.quantize``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "shared")]

from modelbay.convert import examples  # noqa: E402
from modelbay.convert.measure import batch_of, latency_ms  # noqa: E402


def _fmt_gate(m: dict) -> tuple[str, str]:
    g = m.get("gate")
    if not g:
        ev = {k: v for k, v in m.get("evaluation", {}).items() if k != "samples"}
        s = ", ".join(f"{k} {v:.4f}" for k, v in ev.items())
        return s, "(not quantized)"
    return (
        ", ".join(f"{k} {v:.4f}" for k, v in g["fp32"].items() if k != "output_max_abs"),
        ", ".join(f"{k} {v:.4f}" for k, v in g["int8"].items()),
    )


def interleaved_ms(paths: list[Path], feed: dict, repeats: int) -> list[float]:
    """Median latency of each model, runs alternating between them.

    Other tenants share this CPU; alternating means a burst of their load hits
    fp32 and int8 alike, so the ratio stays meaningful even when the absolute
    numbers are not.
    """
    import time

    import numpy as np

    from modelbay.convert.converter import session

    sessions = []
    for p in paths:
        s = session(p)
        f = {i.name: feed[i.name] for i in s.get_inputs()}
        s.run(None, f)
        sessions.append((s, f))
    times: list[list[float]] = [[] for _ in paths]
    for _ in range(repeats):
        for k, (s, f) in enumerate(sessions):
            t = time.perf_counter()
            s.run(None, f)
            times[k].append(time.perf_counter() - t)
    return [float(np.median(t) * 1000.0) for t in times]


def bench_examples(repeats: int) -> list[dict]:
    rows = []
    for r in examples.build_all(progress=lambda msg, _f: print(f"  .. {msg}", file=sys.stderr)):
        feed = importlib.import_module(f"modelbay.convert.examples.{r.name}").bench_feed()
        fp32 = r.fp32_path or r.onnx_path
        row = {
            "name": r.name,
            "method": r.metadata.quantization.method if r.metadata.quantization else "none",
            "size_fp32": fp32.stat().st_size,
            "size_int8": r.onnx_path.stat().st_size if r.fp32_path else None,
        }
        for b in (1, 32):
            f = batch_of(feed, b)
            if r.fp32_path:
                row[f"b{b}_fp32_ms"], row[f"b{b}_int8_ms"] = interleaved_ms([fp32, r.onnx_path], f, repeats)
            else:
                row[f"b{b}_fp32_ms"], row[f"b{b}_int8_ms"] = latency_ms(fp32, f, repeats), None
        row["gate_fp32"], row["gate_int8"] = _fmt_gate(r.metadata.metrics)
        q = r.metadata.quantization
        row["kept_fp32"] = list(q.kept_fp32_nodes) if q else []
        rows.append(row)
    return rows


def bench_minilm_variants(repeats: int) -> list[dict]:
    import numpy as np

    from modelbay.convert.examples import minilm
    from modelbay.convert.quantize import TARGETS, compact_kept, quantize

    r = examples.build("minilm")
    tok = minilm.tokenizer()
    ev = minilm.eval_dataset(minilm.pooled_model(), tok)
    feed32 = batch_of(ev.batches[0], 32)
    kept = list(r.metadata.quantization.kept_fp32_nodes)

    def score(path: Path) -> dict:
        from modelbay.convert.converter import session

        s = session(path)
        cos = np.concatenate(
            [
                (ref * (o := s.run(None, b)[0])).sum(1) / np.linalg.norm(o, axis=1)
                for ref, b in zip(ev.reference, ev.batches)
            ]
        )
        return {
            "cos_min": float(cos.min()),
            "cos_mean": float(cos.mean()),
            "size": path.stat().st_size,
            "b32_ms": latency_ms(path, feed32, repeats),
        }

    out = [{"variant": "fp32 (onnxruntime)", **score(r.fp32_path)}]
    with tempfile.TemporaryDirectory() as d:
        q = Path(d) / "q.onnx"
        variants = [
            ("arm64: per-tensor", replace(TARGETS["arm64"], per_channel=False)),
            ("arm64: per-channel (plain int8)", TARGETS["arm64"]),
            ("x86_64: per-channel + reduce_range", TARGETS["x86_64"]),
            (
                f"arm64: mixed, {len(kept)} nodes fp32 (published)",
                replace(TARGETS["arm64"], nodes_to_exclude=tuple(kept)),
            ),
            (f"x86_64: same {len(kept)} nodes fp32", replace(TARGETS["x86_64"], nodes_to_exclude=tuple(kept))),
        ]
        for label, opts in variants:
            print(f"  .. {label}", file=sys.stderr)
            quantize(r.fp32_path, q, "dynamic", opts)
            out.append({"variant": label, **score(q)})
        if kept:
            quantize(r.fp32_path, q, "dynamic", replace(TARGETS["arm64"], nodes_to_exclude=tuple(kept)))
            compact_kept(q, kept, Path(d) / "c.onnx")
            out.append({"variant": "mixed + kept weights as 8-bit blocks", **score(Path(d) / "c.onnx")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", action="store_true", help="also measure MiniLM quantization variants")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    rows = bench_examples(args.repeats)
    mb = lambda b: "-" if b is None else f"{b / 1e6:.2f} MB"  # noqa: E731
    ms = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"# examples ({os.cpu_count()} cores, onnxruntime CPU, median of {args.repeats})\n")
    ratio = lambda a, b: "-" if not b else f"{a / b:.2f}x"  # noqa: E731
    print(
        "| model | method | size fp32 | size int8 | b1 fp32 ms | b1 int8 ms | b32 fp32 ms | b32 int8 ms "
        "| b32 speed-up | gate fp32 | gate int8 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['method']} | {mb(r['size_fp32'])} | {mb(r['size_int8'])} | {ms(r['b1_fp32_ms'])} | "
            f"{ms(r['b1_int8_ms'])} | {ms(r['b32_fp32_ms'])} | {ms(r['b32_int8_ms'])} | "
            f"{ratio(r['b32_fp32_ms'], r['b32_int8_ms'])} | {r['gate_fp32']} | {r['gate_int8']} |"
        )
    for r in rows:
        if r["kept_fp32"]:
            print(f"\n{r['name']}: kept in fp32: {', '.join(r['kept_fp32'])}")
    result = {"examples": rows}
    if args.variants:
        var = bench_minilm_variants(args.repeats)
        result["minilm_variants"] = var
        print("\n# MiniLM dynamic int8 variants (320 sentences, batch 32, vs PyTorch fp32)\n")
        print("| variant | cos min | cos mean | size | b32 ms |")
        print("|---|---|---|---|---|")
        for v in var:
            print(
                f"| {v['variant']} | {v['cos_min']:.4f} | {v['cos_mean']:.4f} | {mb(v['size'])} | {v['b32_ms']:.1f} |"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
