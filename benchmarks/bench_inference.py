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
import base64
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
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def timed(fn, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def build_mlp(path: Path, dims=(384, 2048, 2048, 384)) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / a**0.5).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        out = "y" if i == len(dims) - 2 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out if out == "y" else f"g{i}"]))
        if out != "y":
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        prev = out
    graph = helper.make_graph(nodes, "bench_mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dims[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", dims[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelbay-bench")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def env_for(endpoint: str, cache: Path, **extra) -> dict[str, str]:
    return {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "MODELBAY_STORE": f"s3://{BUCKET}/mb", "MODELBAY_CACHE_DIR": str(cache),
            "PYTHONPATH": f"{ROOT / 'shared'}{os.pathsep}{ROOT}", **extra}


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
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORTS_CHILD], env=env, capture_output=True,
                       text=True, timeout=120)
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


def synth_feeds(sess, batch: int, seq: int = 16, seed: int = 0) -> dict:
    """Inputs for any model from its signature: symbolic dims -> batch (first) or ``seq``;
    token ids in a range every BERT-style vocabulary has, masks of ones, token types of zeros."""
    import numpy as np

    rng = np.random.default_rng(seed)
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32}
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


def oip_event(feeds: dict) -> dict:
    from modelbay.protocols import oip
    from tests.apigw import event

    body, headers = oip.encode_request(feeds, None)
    return event("POST", f"/v2/models/{MODEL}/infer", body=body, headers=headers)


def cold_start(endpoint: str, runs: int, tmp: Path, first_feeds: dict) -> list[dict]:
    ev = json.dumps(oip_event(first_feeds))
    out = []
    for i in range(runs):
        env = env_for(endpoint, tmp / f"cold-cache-{i}", MODELBAY_PREWARM=f"{MODEL}:production",
                      AWS_LAMBDA_FUNCTION_NAME="modelbay-bench")
        t = time.time()
        p = subprocess.run([sys.executable, "-c", COLD_CHILD, str(ROOT)], input=ev, env=env,
                           capture_output=True, text=True, timeout=120)
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
    ap.add_argument("--model", type=Path, help="any ONNX model; inputs are synthesised from its signature "
                                               "(default: the 23 MB MLP built here)")
    ap.add_argument("--seq", type=int, default=16, help="length of symbolic non-batch dims (tokens)")
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    import logging

    import numpy as np
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    iters = {1: 300 if args.quick else 2000, 32: 100 if args.quick else 500}
    tmp = Path(tempfile.mkdtemp(prefix="modelbay-bench-"))
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({k: v for k, v in env_for(endpoint, tmp / "cache").items()
                       if k.startswith(("AWS_", "MODELBAY_"))})
    results: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "load_avg": os.getloadavg()}}
    try:
        import boto3

        from modelbay.engine.session import SessionConfig, build_session
        from modelbay.registry import Registry
        from modelbay.storage.s3 import S3Store

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        path = args.model or build_mlp(tmp / "mlp.onnx")
        size_mb = path.stat().st_size / 1e6
        Registry(S3Store(BUCKET, "mb")).register_version(MODEL, path, aliases=["production"])
        config = SessionConfig()
        results["model"] = {"path": str(path), "size_mb": round(size_mb, 1), "threads": config.intra_op_threads,
                            "optimization": config.optimization}
        print(f"model {path.name}: {size_mb:.1f} MB in s3://{BUCKET}/mb (moto); onnxruntime "
              f"{config.intra_op_threads} intra-op threads, graph optimisation '{config.optimization}'",
              flush=True)

        # ---- raw session.run
        sess = build_session(path, config)
        xs = {b: synth_feeds(sess, b, args.seq) for b in (1, 32)}
        outputs = [o.name for o in sess.get_outputs()]
        lat: dict[str, dict[int, list[float]]] = {}
        lat["raw session.run"] = {b: timed(lambda b=b: sess.run(outputs, xs[b]), iters[b], 50) for b in xs}

        # ---- engine, no transport (decode/validate/run/encode without HTTP or Lambda)
        from modelbay.engine import Engine, Timings
        from modelbay.engine.service import infer
        from modelbay.protocols import oip
        from modelbay.settings import Settings

        engine = Engine(S3Store(BUCKET, "mb"), Settings(cache_dir=tmp / "engine-cache"))
        bodies = {b: oip.encode_request(xs[b], None) for b in xs}

        def engine_call(b):
            body, headers = bodies[b]
            req = oip.decode_request(body, headers[oip.HEADER])
            model, out = infer(engine, "default", MODEL, None, req.inputs, None, Timings.start())
            oip.encode_response(MODEL, model.version, [(k, v, True) for k, v in out.items()])

        lat["engine + OIP codec"] = {b: timed(lambda b=b: engine_call(b), iters[b], 50) for b in xs}

        # ---- the Lambda handler, API Gateway events
        from tests.apigw import LambdaContext, event, load_function

        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "modelbay-bench"
        fn = load_function("inference")
        os.environ.pop("AWS_LAMBDA_FUNCTION_NAME")
        ctx = LambdaContext()
        oip_events = {b: oip_event(xs[b]) for b in xs}
        v1_events = {b: event("POST", f"/v1/models/{MODEL}:predict", body={"instances": instances(xs[b])})
                     for b in xs}
        for e in (*oip_events.values(), *v1_events.values()):
            assert fn.handler(e, ctx)["statusCode"] == 200
        lat["Lambda handler, OIP binary"] = {b: timed(lambda b=b: fn.handler(oip_events[b], ctx), iters[b], 50)
                                             for b in xs}
        lat["Lambda handler, V1 JSON"] = {b: timed(lambda b=b: fn.handler(v1_events[b], ctx), iters[b], 50)
                                          for b in xs}

        # ---- HTTP to the local server in its own process
        import httpx

        hport = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVE_CHILD, str(hport)],
                                  env=env_for(endpoint, tmp / "http-cache"))
        try:
            url = f"http://127.0.0.1:{hport}"
            with httpx.Client(base_url=url, timeout=30) as http:
                for _ in range(200):
                    try:
                        if http.get("/v2/health/live").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.05)

                def post(b):
                    body, headers = bodies[b]
                    r = http.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
                    assert r.status_code == 200, r.text

                lat["HTTP local server, OIP binary"] = {b: timed(lambda b=b: post(b), iters[b], 50) for b in xs}
        finally:
            server.terminate()
            server.wait(10)

        results["latency_ms"] = {k: {str(b): {"p50": pct(v, 50), "p99": pct(v, 99), "mean": statistics.fmean(v)}
                                     for b, v in per.items()} for k, per in lat.items()}

        # ---- cold starts
        print("cold starts ...", flush=True)
        colds = cold_start(endpoint, args.cold_runs, tmp, xs[1])
        results["cold_start_ms"] = {k: statistics.median(c[k] for c in colds) for k in colds[0]}
        results["import_ms_by_package"] = import_breakdown(env_for(endpoint, tmp / "imp-cache"))
        results["peak_rss_mb"] = {
            "Lambda process (init + first request)": results["cold_start_ms"].pop("peak_rss_mb"),
            "bench process (raw, engine, handler, moto)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    finally:
        moto.stop()
    report(results, size_mb)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def report(r: dict, size_mb: float) -> None:
    lat = r["latency_ms"]
    print(f"\nlatency (ms), {r['model']['size_mb']} MB model")
    print(f"{'path':34} {'b1 p50':>8} {'b1 p99':>8} {'b32 p50':>8} {'b32 p99':>8}   {'+p50 over raw (b1)':>18}")
    raw = lat["raw session.run"]["1"]["p50"]
    for k, v in lat.items():
        over = "" if k == "raw session.run" else f"{v['1']['p50'] - raw:+.3f}"
        print(f"{k:34} {v['1']['p50']:8.3f} {v['1']['p99']:8.3f} {v['32']['p50']:8.3f} {v['32']['p99']:8.3f}   "
              f"{over:>18}")
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
    handler = lat["Lambda handler, OIP binary"]["1"]["p50"] - raw
    cold = c["to_first_prediction"] + c["interpreter"]  # interpreter start-up is part of a Lambda init too
    print(f"\ngoals: handler overhead at batch 1 {handler:.3f} ms (goal <= 0.5): "
          f"{'met' if handler <= 0.5 else 'NOT met'};  cold start {cold:.0f} ms for {size_mb:.0f} MB "
          f"(goal <= 800): {'met' if cold <= 800 else 'NOT met'};  load average {r['machine']['load_avg'][0]:.1f} "
          f"on {r['machine']['cpus']} CPUs")


if __name__ == "__main__":
    main()
