"""Text generation side by side on the SmolLM2 demo: PyTorch ``generate`` (the sources' way), modelbay's
decode loop over onnxruntime in fp32, int8 and int4, and onnxruntime-genai's own loop when installed.

    python benchmarks/bench_generate.py [--tokens 32,128,512] [--batches 1,4] [--threads 2] [--json out.json]

Greedy, the same prompts, fixed lengths (end-of-sequence ignored), ``--threads`` intra-op threads. Each
variant runs in its own process so its peak RSS is its own. Reports time to first token (TTFT), tokens/s
(all rows of the batch, prefill included) and peak RSS. Builds the example first (cached).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "shared")]

PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a",
    "The three primary colors are",
    "Water boils at a temperature of",
]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_torch(folder: str, tokens: list[int], batches: list[int], threads: int) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    for b in batches:
        enc = tok(PROMPTS[:b], return_tensors="pt", padding=True)
        for n in tokens:
            kw = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False, "pad_token_id": tok.pad_token_id}
            with torch.no_grad():
                t0 = time.perf_counter()
                model.generate(**enc, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)
                ttft = time.perf_counter() - t0
                t0 = time.perf_counter()
                model.generate(**enc, **kw)
                dt = time.perf_counter() - t0
            out.append({"batch": b, "tokens": n, "ttft_ms": ttft * 1000, "tokens_per_s": b * n / dt})
    return out


def run_modelbay(path: str, spec_json: str, tok_file: str, tokens: list[int], batches: list[int], threads: int):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from modelbay.generation.decoder import Decoder
    from modelbay.generation.loop import Run
    from modelbay.generation.sampling import Sampling
    from modelbay.manifest import GenerationSpec

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    t0 = time.perf_counter()
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    spec = GenerationSpec.model_validate_json(spec_json)
    tok = Tokenizer.from_file(tok_file)
    decoder = Decoder(session, spec)
    out = []
    for b in batches:
        rows = [tok.encode(p).ids for p in PROMPTS[:b]]
        for n in tokens:
            run = Run(decoder, tok, rows, Sampling(temperature=0.0), max_tokens=n, eos=())
            for _ in run:
                pass
            out.append(
                {
                    "batch": b,
                    "tokens": n,
                    "ttft_ms": run.ttft_ms,
                    "tokens_per_s": run.tokens_per_second,
                    "session_load_s": load_s,
                }
            )
    return out


def run_genai(folder: str, tokens: list[int], batches: list[int], threads: int) -> list[dict]:
    """onnxruntime-genai: its builder writes its own int4 model folder, its Generator runs the loop."""
    import onnxruntime_genai as og

    work = Path(tempfile.mkdtemp(prefix="bench-genai-"))
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        folder,
        "-o",
        str(work / "m"),
        "-p",
        "int4",
        "-e",
        "cpu",
        "-c",
        str(work / "cache"),
    ]
    t0 = time.perf_counter()
    built = subprocess.run(cmd, capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"builder failed: {built.stderr.strip().splitlines()[-1:]}")
    build_s = time.perf_counter() - t0
    model = og.Model(str(work / "m"))
    tok = og.Tokenizer(model)
    out = []
    for b in batches:
        for n in tokens:
            params = og.GeneratorParams(model)
            params.set_search_options(do_sample=False, max_length=64 + n, min_length=64 + n, batch_size=b)
            gen = og.Generator(model, params)
            t0 = time.perf_counter()
            gen.append_tokens(tok.encode_batch(PROMPTS[:b]))
            first = None
            count = 0
            while not gen.is_done() and count < n:
                gen.generate_next_token()
                first = first or time.perf_counter()
                count += 1
            dt = time.perf_counter() - t0
            out.append(
                {
                    "batch": b,
                    "tokens": count,
                    "ttft_ms": ((first or t0) - t0) * 1000,
                    "tokens_per_s": b * count / dt,
                    "build_s": build_s,
                }
            )
    return out


def one(args: argparse.Namespace) -> None:
    tokens = [int(t) for t in args.tokens.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    if args.one == "torch":
        rows = run_torch(args.folder, tokens, batches, args.threads)
    elif args.one == "genai":
        rows = run_genai(args.folder, tokens, batches, args.threads)
    else:
        rows = run_modelbay(args.path, args.spec, args.tokenizer, tokens, batches, args.threads)
    print(json.dumps({"rows": rows, "peak_rss_mb": _rss_mb()}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", default="32,128")
    p.add_argument("--batches", default="1,4")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--tokenizer", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        return one(args)

    from modelbay.convert import examples
    from modelbay.convert.examples.smollm2 import hf_folder
    from modelbay.convert.generation import quantize_lm
    from modelbay.settings import Settings

    print("building the SmolLM2 example (cached after the first time)...", file=sys.stderr)
    r = examples.build("smollm2")
    folder = hf_folder(Settings.from_env().examples_cache)
    fp32 = r.fp32_path or r.onnx_path
    work = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    files = {"fp32": fp32}
    for kind in ("int8", "int4"):
        files[kind] = work / f"{kind}.onnx"
        quantize_lm(fp32, files[kind], kind)
    spec = r.metadata.generation.model_dump_json()
    common = ["--tokens", args.tokens, "--batches", args.batches, "--threads", str(args.threads)]
    results: dict[str, dict] = {}
    runs = {"pytorch fp32 (generate)": ["--one", "torch", "--folder", str(folder)]}
    for kind, path in files.items():
        runs[f"modelbay {kind}"] = [
            "--one",
            "modelbay",
            "--path",
            str(path),
            "--spec",
            spec,
            "--tokenizer",
            str(r.side_files["tokenizer.json"]),
        ]
    runs["onnxruntime-genai int4"] = ["--one", "genai", "--folder", str(folder)]
    for label, extra in runs.items():
        print(f"running {label}...", file=sys.stderr)
        done = subprocess.run([sys.executable, __file__, *common, *extra], capture_output=True, text=True)
        if done.returncode != 0:
            results[label] = {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200]}
            continue
        results[label] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'variant':26} {'batch':>5} {'tokens':>6} {'TTFT ms':>9} {'tok/s':>8} {'peak RSS MB':>12}")
    for label, res in results.items():
        if "error" in res:
            print(f"{label:26} {res['error']}")
            continue
        for row in res["rows"]:
            print(
                f"{label:26} {row['batch']:>5} {row['tokens']:>6} {row['ttft_ms']:>9.1f} "
                f"{row['tokens_per_s']:>8.1f} {res['peak_rss_mb']:>12.0f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
