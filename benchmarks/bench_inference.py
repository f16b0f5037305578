"""Inference benchmark: raw session.run vs the Lambda handler vs HTTP, cold start, peak RSS.

    python benchmarks/bench_inference.py            # what `make bench` runs
    python benchmarks/bench_inference.py --model path/to/model.onnx --quick

Everything is real: the model sits in S3 (moto's server on loopback), the
Lambda path is functions/inference/app.py invoked with API Gateway REST-proxy
events (binary OIP bodies base64, as API Gateway delivers them), and HTTP is
a separate `uvicorn` process serving the local app. Cold start is a fresh
Python process per run, with an empty disk cache, up to the first prediction.

Until the conversion work lands, the default model is an MLP sized like
all-MiniLM-L6-v2 int8 (about 23 MB): 384 -> 2048 -> 2048 -> 384 in float32.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

BUCKET = "modelbay-bench"
MODEL = "bench"


# ------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def interleaved(
    paths: dict[str, object], iters: int, warmup: int, budget_s: float | None = None
) -> dict[str, list[float]]:
    """Time several paths round-robin, alternating the order: a burst of load from elsewhere on
    the machine then hits every path alike, so their differences stay meaningful. With a budget,
    stop early (after at least 50 rounds) once the rounds have taken that long."""
    for _ in range(warmup):
        for fn in paths.values():
            fn()
    out: dict[str, list[float]] = {k: [] for k in paths}
    items = list(paths.items())
    start = time.perf_counter()
    for i in range(iters):
        for name, fn in items if i % 2 == 0 else items[::-1]:
            t = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - t) * 1000)
        if budget_s and i >= 50 and time.perf_counter() - start > budget_s:
            break
    return out


def build_mlp(path: Path, dims=(384, 2048, 2048, 384)) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        inits += [
            numpy_helper.from_array((rng.standard_normal((a, b)) / a**0.5).astype(np.float32), f"w{i}"),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        out = "y" if i == len(dims) - 2 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out if out == "y" else f"g{i}"]))
        if out != "y":
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "bench_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dims[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", dims[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelbay-bench")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# Every path authenticates as deployed servers do: the bootstrap key, sent on each request.
BENCH_KEY = "bench-bootstrap-admin-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}


def env_for(endpoint: str, cache: Path, **extra) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MODELBAY_STORE": f"s3://{BUCKET}/mb",
        "MODELBAY_CACHE_DIR": str(cache),
        "MODELBAY_BOOTSTRAP_KEY": BENCH_KEY,
        "PYTHONPATH": f"{ROOT / 'shared'}{os.pathsep}{ROOT}",
        **extra,
    }


# --------------------------------------------------------- child: cold start
COLD_CHILD = r"""
import json, os, sys, time
T0 = time.perf_counter(); W0 = time.time()
def hwm():  # VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
import importlib.util
spec = importlib.util.spec_from_file_location("inference_app", os.path.join(sys.argv[1], "functions/inference/app.py"))
app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)   # Lambda's init phase
T1 = time.perf_counter()
event = json.loads(sys.stdin.read())
class Ctx:
    function_name = "bench"; memory_limit_in_mb = 1024; aws_request_id = "0"
    invoked_function_arn = "arn:aws:lambda:us-east-1:0:function:bench"
    def get_remaining_time_in_millis(self): return 30000
r = app.handler(event, Ctx())
T2 = time.perf_counter()
assert r["statusCode"] == 200, r
model = next(iter(app.app.state.engine.sessions._items.values()))[0]
print(json.dumps({"wall_start": W0, "init": (T1-T0)*1000, "fetch (overlapped)": model.fetch_ms,
                  "session (overlapped)": model.load_ms, "first_request": (T2-T1)*1000,
                  "to_first_prediction": (T2-T0)*1000,
                  "peak_rss_mb": hwm()}))
"""

IMPORTS_CHILD = "import mangum, onnxruntime, modelbay.api.app, modelbay.api.inference_routes, modelbay.storage.s3"


def import_breakdown(env: dict[str, str]) -> dict[str, float]:
    """python -X importtime of what the init phase imports, self time summed per top-level package (ms)."""
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", IMPORTS_CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    per: dict[str, float] = {}
    for line in p.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        top = parts[2].strip().split(".")[0]
        per[top] = per.get(top, 0.0) + int(parts[0]) / 1000
    return dict(sorted(per.items(), key=lambda kv: -kv[1]))


SERVE_CHILD = r"""
import sys, uvicorn
from modelbay.api.app import create_app
uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Serverless inference keeps a warm session per model version.",
    "How do I reset my password?",
    "Quantized models are smaller and usually faster on CPUs.",
    "The meeting has been moved to Thursday afternoon at three o'clock, in the large room on the fourth floor.",
    "Cats sleep for most of the day.",
    "Please send the invoice to the accounting department before the end of the month.",
    "What is the capital of Australia?",
] * 4  # 32 sentences of mixed lengths: dynamic padding goes to the longest of each batch


def pick_model(args, tmp: Path):
    """(onnx path, metadata or None, side files, label) for --model, --example or the fallback MLP."""
    if args.model:
        return args.model, None, {}, args.model.name
    if args.example != "mlp":
        try:
            from modelbay.convert.examples import build

            print(f"example {args.example}: building it once (minutes), then cached ...", flush=True)
            r = build(args.example)
            return r.onnx_path, r.metadata, dict(r.side_files), f"{args.example} int8 (examples cache)"
        except ImportError as e:
            print(f"example {args.example} needs the convert extra ({e}); using the MLP", flush=True)
    return build_mlp(tmp / "mlp.onnx"), None, {}, "MLP 384-2048-2048-384 fp32 (MiniLM int8's size)"


def synth_feeds(sess, batch: int, seq: int = 16, seed: int = 0) -> dict:
    """Inputs for any model from its signature: symbolic dims -> batch (first) or ``seq``;
    token ids in a range every BERT-style vocabulary has, masks of ones, token types of zeros."""
    import numpy as np

    rng = np.random.default_rng(seed)
    types = {
        "tensor(float)": np.float32,
        "tensor(float16)": np.float16,
        "tensor(double)": np.float64,
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
    }
    feeds = {}
    for i in sess.get_inputs():
        shape = [batch if k == 0 else (d if isinstance(d, int) and d > 0 else seq) for k, d in enumerate(i.shape)]
        dtype = types[i.type]
        if np.dtype(dtype).kind == "f":
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
        elif "mask" in i.name:
            feeds[i.name] = np.ones(shape, dtype)
        elif "type" in i.name:
            feeds[i.name] = np.zeros(shape, dtype)
        else:
            feeds[i.name] = rng.integers(1000, 2000, shape).astype(dtype)
    return feeds


def instances(feeds: dict) -> list:
    """The same batch as V1 instances: rows of the single input, or one object per row."""
    if len(feeds) == 1:
        return next(iter(feeds.values())).tolist()
    n = len(next(iter(feeds.values())))
    return [{k: v[i].tolist() for k, v in feeds.items()} for i in range(n)]


def oip_event(feeds: dict, outputs: list[str]) -> dict:
    from modelbay.protocols import oip
    from tests.apigw import event

    body, headers = oip.encode_request(feeds, outputs)
    return event("POST", f"/v2/models/{MODEL}/infer", body=body, headers={**headers, **AUTH})


def cold_start(endpoint: str, runs: int, tmp: Path, first_feeds: dict) -> list[dict]:
    ev = json.dumps(oip_event(first_feeds, None))
    out = []
    for i in range(runs):
        env = env_for(
            endpoint,
            tmp / f"cold-cache-{i}",
            MODELBAY_PREWARM=f"{MODEL}:production",
            AWS_LAMBDA_FUNCTION_NAME="modelbay-bench",
        )
        t = time.time()
        p = subprocess.run(
            [sys.executable, "-c", COLD_CHILD, str(ROOT)],
            input=ev,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        wall = (time.time() - t) * 1000
        if p.returncode:
            raise SystemExit(f"cold-start child failed:\n{p.stderr}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r["interpreter"] = (r.pop("wall_start") - t) * 1000
        r["process_wall"] = wall
        out.append(r)
    return out


# --------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--example",
        default="minilm",
        choices=["minilm", "digits", "pii", "mlp"],
        help="a modelbay example (built once by the conversion code, then cached); 'mlp' is "
        "a 23 MB MLP built here, the fallback when the convert extra is missing",
    )
    ap.add_argument("--model", type=Path, help="any ONNX model instead; inputs are synthesised from its signature")
    ap.add_argument("--seq", type=int, default=16, help="length of symbolic non-batch dims (tokens)")
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=90, help="time budget per batch size (at least 50 rounds)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    iters = {1: 300 if args.quick else 2000, 32: 100 if args.quick else 500}
    tmp = Path(tempfile.mkdtemp(prefix="modelbay-bench-"))
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        {k: v for k, v in env_for(endpoint, tmp / "cache").items() if k.startswith(("AWS_", "MODELBAY_"))}
    )
    results: dict = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0]}
    }
    try:
        import boto3

        from modelbay.engine.session import SessionConfig, build_session
        from modelbay.registry import Registry
        from modelbay.storage.s3 import S3Store

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        path, metadata, side_files, label = pick_model(args, tmp)
        size_mb = path.stat().st_size / 1e6
        manifest = Registry(S3Store(BUCKET, "mb")).register_version(
            MODEL, path, metadata, side_files, aliases=["production"]
        )
        config = SessionConfig()
        results["model"] = {
            "name": label,
            "path": str(path),
            "size_mb": round(size_mb, 1),
            "threads": config.intra_op_threads,
            "optimization": config.optimization,
        }
        print(
            f"model {label}: {size_mb:.1f} MB in s3://{BUCKET}/mb (moto); onnxruntime "
            f"{config.intra_op_threads} intra-op threads, graph optimisation '{config.optimization}'",
            flush=True,
        )

        # ---- raw session.run
        sess = build_session(path, config)
        v1_instances: dict[int, list] = {}
        if metadata is not None and getattr(metadata.preprocessing, "kind", None) == "text":
            # real sentences through the version's own tokenizer, padded to the longest of each batch
            from modelbay.preprocess import build_preprocessor

            pre = build_preprocessor(manifest, side_files)
            v1_instances = {b: SENTENCES[:b] for b in (1, 32)}
            xs = {b: pre(v1_instances[b]) for b in (1, 32)}
        else:
            xs = {b: synth_feeds(sess, b, args.seq) for b in (1, 32)}
            v1_instances = {b: instances(xs[b]) for b in xs}
        # every path computes and returns the same outputs: the one the postprocessing reads if the
        # version has one (a client wants the sentence embedding, not 32 x seq x 384 token vectors)
        post = getattr(metadata, "postprocessing", None)
        outputs = (
            [post.output if post.kind == "embedder" else post.scores] if post else [o.name for o in sess.get_outputs()]
        )
        paths: dict[str, dict[int, object]] = {"raw session.run": {b: lambda b=b: sess.run(outputs, xs[b]) for b in xs}}

        # ---- the graph optimisation level: session build time vs run latency
        print("optimisation levels ...", flush=True)
        opt: dict[str, dict[str, float]] = {}
        levels = {}
        for level in ("disable", "basic", "extended", "all"):
            t = time.perf_counter()
            levels[level] = build_session(path, SessionConfig(optimization=level))
            opt[level] = {"build_ms": (time.perf_counter() - t) * 1000}
        for b in xs:  # the levels round-robin too, so they see the same load
            runs = interleaved(
                {lv: (lambda b=b, s_=s_: s_.run(outputs, xs[b])) for lv, s_ in levels.items()},
                iters[b] // 2,
                10,
                args.seconds / 3,
            )
            for lv, v in runs.items():
                opt[lv][f"b{b}_p50"] = pct(v, 50)
        del levels
        results["optimization_levels"] = opt

        # ---- the inference service, no transport (decode/validate/run/encode without HTTP or Lambda)
        from modelbay.engine import Engine, InferenceService
        from modelbay.metrics import NullSink
        from modelbay.protocols import oip
        from modelbay.settings import Settings

        engine = Engine(S3Store(BUCKET, "mb"), Settings(cache_dir=tmp / "engine-cache"))
        service = InferenceService(engine, NullSink())
        bodies = {b: oip.encode_request(xs[b], outputs) for b in xs}

        def engine_call(b):
            body, headers = bodies[b]
            oip.encode_response(service.infer("default", MODEL, None, body, header_length=headers[oip.HEADER]).payload)

        paths["engine + OIP codec"] = {b: lambda b=b: engine_call(b) for b in xs}

        # ---- the Lambda handler, API Gateway events
        from tests.apigw import LambdaContext, event, load_function

        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "modelbay-bench"
        fn = load_function("inference")
        os.environ.pop("AWS_LAMBDA_FUNCTION_NAME")
        # On Lambda the EMF metrics lines go to stdout, a pipe to CloudWatch Logs: still written
        # per request here (their cost is measured), but to /dev/null so the table stays readable.
        sink = fn.app.state.metrics
        if hasattr(sink, "stream"):
            sink.stream = open(os.devnull, "w")  # noqa: SIM115  # written to until the process exits
        ctx = LambdaContext()
        oip_events = {b: oip_event(xs[b], outputs) for b in xs}
        v1_events = {
            b: event("POST", f"/v1/models/{MODEL}:predict", body={"instances": v1_instances[b]}, headers=AUTH)
            for b in xs
        }
        for e in (*oip_events.values(), *v1_events.values()):
            assert fn.handler(e, ctx)["statusCode"] == 200
        paths["Lambda handler, OIP binary"] = {b: lambda b=b: fn.handler(oip_events[b], ctx) for b in xs}
        paths["Lambda handler, V1 JSON"] = {b: lambda b=b: fn.handler(v1_events[b], ctx) for b in xs}
        # ---- HTTP to the local server in its own process, timed in the same round-robin
        import httpx

        hport = free_port()
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE_CHILD, str(hport)], env=env_for(endpoint, tmp / "http-cache")
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{hport}", timeout=30, headers=AUTH) as http:
                for _ in range(400):
                    try:
                        if http.get("/v2/health/live").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.05)

                def post(b):
                    body, headers = bodies[b]
                    r = http.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
                    assert r.status_code == 200, r.text

                paths["HTTP local server, OIP binary"] = {b: lambda b=b: post(b) for b in xs}
                lat: dict[str, dict[int, list[float]]] = {k: {} for k in paths}
                for b in xs:
                    print(f"  batch {b}: {len(paths)} paths round-robin ...", flush=True)
                    rounds = interleaved({k: per[b] for k, per in paths.items()}, iters[b], 20, args.seconds)
                    for k, samples in rounds.items():
                        lat[k][b] = samples
        finally:
            server.terminate()
            server.wait(10)

        # samples i of two paths ran back to back: the median of their differences is the overhead,
        # robust to load that comes and goes during the run
        results["latency_ms"] = {
            k: {
                str(b): {
                    "p50": pct(v, 50),
                    "p99": pct(v, 99),
                    "mean": statistics.fmean(v),
                    "over_raw_p50": statistics.median(x - r for x, r in zip(v, lat["raw session.run"][b])),
                }
                for b, v in per.items()
            }
            for k, per in lat.items()
        }

        # ---- cold starts
        print("cold starts ...", flush=True)
        colds = cold_start(endpoint, args.cold_runs, tmp, xs[1])
        results["cold_start_ms"] = {k: statistics.median(c[k] for c in colds) for k in colds[0]}
        results["import_ms_by_package"] = import_breakdown(env_for(endpoint, tmp / "imp-cache"))
        results["machine"]["load_avg_end"] = os.getloadavg()[0]
        results["peak_rss_mb"] = {
            "Lambda process (init + first request)": results["cold_start_ms"].pop("peak_rss_mb"),
            "bench process (raw, engine, handler, moto)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        moto.stop()
    report(results, size_mb)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def report(r: dict, size_mb: float) -> None:
    lat = r["latency_ms"]
    print(f"\nlatency (ms), {r['model']['name']}, {r['model']['size_mb']} MB")
    print(f"{'path':34} {'b1 p50':>8} {'b1 p99':>8} {'b32 p50':>8} {'b32 p99':>8}   {'over raw, b1':>12} {'b32':>7}")
    for k, v in lat.items():
        over = "" if k == "raw session.run" else f"{v['1']['over_raw_p50']:+12.3f} {v['32']['over_raw_p50']:+7.3f}"
        print(f"{k:34} {v['1']['p50']:8.3f} {v['1']['p99']:8.3f} {v['32']['p50']:8.3f} {v['32']['p99']:8.3f}   {over}")
    print("  (over raw: median of the differences between back-to-back samples of the path and of session.run)")
    print("\ngraph optimisation level (session build ms; session.run p50 ms at batch 1 / 32)")
    for level, v in r["optimization_levels"].items():
        print(f"  {level:10} build {v['build_ms']:7.1f}   b1 {v['b1_p50']:7.3f}   b32 {v['b32_p50']:7.3f}")
    c = r["cold_start_ms"]
    print("\ncold start (ms, median of runs), fresh process, model fetched from S3 (moto server)")
    for k, v in c.items():
        print(f"  {k:24} {v:9.1f}")
    imports = r["import_ms_by_package"]
    print(f"\ninit-phase imports (python -X importtime, self ms by package; total {sum(imports.values()):.0f})")
    print("  " + ", ".join(f"{k} {v:.0f}" for k, v in list(imports.items())[:12]))
    print("\npeak RSS (MB)")
    for k, v in r["peak_rss_mb"].items():
        print(f"  {k:28} {v:9.1f}")
    m = r["machine"]
    handler = lat["Lambda handler, OIP binary"]["1"]["over_raw_p50"]
    cold = c["to_first_prediction"] + c["interpreter"]  # interpreter start-up is part of a Lambda init too
    print(
        f"\ngoals: handler overhead at batch 1 {handler:.3f} ms (goal <= 0.5): "
        f"{'met' if handler <= 0.5 else 'NOT met'};  cold start {cold:.0f} ms for {size_mb:.0f} MB "
        f"(goal <= 800): {'met' if cold <= 800 else 'NOT met'};  1-min load average {m['load_avg_start']:.1f} at "
        f"the start, {m['load_avg_end']:.1f} at the end, on {m['cpus']} CPUs"
    )


if __name__ == "__main__":
    main()
