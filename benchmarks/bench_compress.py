"""The variant search on the example models: every candidate's gate numbers, size and latency, side by side.

    python benchmarks/bench_compress.py [--model minilm|digits|mlp] [--ratios 0.25,0.5] [--score activation]
                                        [--accuracy-level 0] [--repeats 20] [--json out.json]

Runs ``prepare(optimize=SearchOptions(...))`` (``modelbay.convert.search``) on
the model, then times every candidate the gate passed or failed again, at
batch 1 and 32, with runs alternating between the models (other tenants share
this CPU; alternating keeps the ratios meaningful). Prints the table and the
CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "shared"), str(ROOT / "benchmarks")]

from bench_quantize import interleaved_ms  # noqa: E402

from modelbay.convert.gate import GateFailed  # noqa: E402
from modelbay.convert.measure import batch_of  # noqa: E402
from modelbay.convert.quantize import Int4Options  # noqa: E402
from modelbay.convert.search import SearchOptions, parse_ratios  # noqa: E402
from modelbay.cpu_features import detect  # noqa: E402


def minilm(work: Path, options: SearchOptions, mixed: bool = True):
    import torch

    from modelbay.convert.examples import minilm as ex
    from modelbay.convert.gate import GateThresholds
    from modelbay.convert.pipeline import prepare

    torch.set_num_threads(min(2, torch.get_num_threads()))
    tok = ex.tokenizer(work / "tokenizer.json")
    model = ex.pooled_model()
    evals = ex.eval_dataset(model, tok)
    prep = prepare(
        model,
        name="minilm",
        workdir=work,
        input_spec=ex.INPUTS,
        example=evals.batches[0],
        output_names=["sentence_embedding"],
        quantize_mode="dynamic",
        eval_data=evals,
        metadata=ex.metadata(),
        side_files={"tokenizer.json": work / "tokenizer.json"},
        thresholds=GateThresholds(min_cosine=0.99, min_cosine_mean=0.998),
        mixed_precision=mixed,
        optimize=options,
        progress=lambda m, _f: print(f"  .. {m}", file=sys.stderr),
    )
    return prep, ex.bench_feed()


def small(name: str, work: Path, options: SearchOptions):
    import torch

    from modelbay.convert.data import Dataset
    from modelbay.convert.pipeline import prepare

    torch.manual_seed(0)
    if name == "digits":
        from modelbay.convert.examples import digits as ex

        model, (xtr, xte, _ytr, yte) = ex.train()
        key, spec, mode = "image", "image:float32:[batch,1,8,8]", "static"
    else:
        from modelbay.convert.examples import mlp as ex
        from modelbay.convert.examples.fit import fit_classifier

        xtr, xte, ytr, yte = ex.dataset()
        model = fit_classifier(ex.make_mlp(), xtr, ytr, epochs=60, batch=128, lr=3e-3)
        key, spec, mode = "x", "x:float32:[batch,100]", "dynamic"
    evals = Dataset([{key: xte[i : i + 100]} for i in range(0, len(xte), 100)], labels=yte)
    calib = Dataset([{key: xtr[i : i + 100]} for i in range(0, 500, 100)])
    prep = prepare(
        model,
        name=name,
        workdir=work,
        input_spec=spec,
        output_names=["logits"],
        quantize_mode=mode,
        eval_data=evals,
        calibration=calib,
        metadata=ex.metadata(),
        optimize=options,
        progress=lambda m, _f: print(f"  .. {m}", file=sys.stderr),
    )
    return prep, {key: xte[:32]}


def bench_feed(model: str) -> dict:
    from modelbay.convert.examples import minilm as ex

    assert model == "minilm", "the small models always pass int8"
    return ex.bench_feed()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm", choices=["minilm", "digits", "mlp"])
    ap.add_argument("--ratios", default="0.25,0.5")
    ap.add_argument("--score", default="activation")
    ap.add_argument("--accuracy-level", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--kinds", default="linear,conv,heads,ffn", help="unit kinds to prune")
    ap.add_argument("--no-mixed", action="store_true", help="skip mixed precision (its search is the slow part)")
    ap.add_argument("--json")
    a = ap.parse_args()
    options = SearchOptions(
        prune_ratios=parse_ratios(a.ratios),
        prune_score=a.score,
        prune_kinds=tuple(a.kinds.split(",")),
        int4=Int4Options(accuracy_level=a.accuracy_level),
        budget_s=3600,
        keep_candidates=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as w:
        work = Path(w)
        try:
            prep, feed = minilm(work, options, not a.no_mixed) if a.model == "minilm" else small(a.model, work, options)
            table = prep.metadata.metrics["search"]
        except GateFailed as e:  # nothing passed: still a result, with every candidate's numbers
            table, feed = e.details["search"], bench_feed(a.model)
        rows = table["candidates"]
        # the candidates' files: fp32 is the export, the rest are cand-NN.onnx in candidate order
        paths: list[Path | None] = [work / "model.fp32.onnx"] + [
            work / "search" / f"cand-{i:02d}.onnx" if (work / "search" / f"cand-{i:02d}.onnx").is_file() else None
            for i in range(2, len(rows) + 1)
        ]
        built = ("baseline", "passed", "failed")
        timed = [(r, p) for r, p in zip(rows, paths) if p is not None and r["status"] in built]
        for b in (1, 32):
            ms = interleaved_ms([p for _, p in timed], batch_of(feed, b), a.repeats)
            for (r, _), t in zip(timed, ms):
                r.setdefault("bench_ms", {})[f"b{b}"] = round(t, 3)
    base = rows[0]
    cpu = detect().as_dict()
    print(f"\n{a.model} on {cpu.get('model') or cpu}  (chosen: {table.get('chosen')})")
    print(f"{'candidate':<26}{'status':<9}{'gate':<34}{'MB':>7}{'b1 ms':>9}{'b32 ms':>9}{'x b32':>7}")
    for r in rows:
        gate = ", ".join(f"{k} {v:.4f}" for k, v in r.get("gate", {}).items())
        size = f"{r['size_bytes'] / 1e6:.2f}" if "size_bytes" in r else "-"
        bm = r.get("bench_ms", {})
        speed = f"{base['bench_ms']['b32'] / bm['b32']:.2f}" if "b32" in bm else "-"
        print(
            f"{r['name']:<26}{r['status']:<9}{gate[:33]:<34}{size:>7}"
            f"{bm.get('b1', float('nan')):>9.2f}{bm.get('b32', float('nan')):>9.2f}{speed:>7}"
        )
        if r.get("note"):
            print(f"{'':<4}{r['note'][:100]}")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": a.model, "cpu": cpu, "search": table}, indent=1))


if __name__ == "__main__":
    main()
