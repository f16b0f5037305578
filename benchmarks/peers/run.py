"""Peers: the same all-MiniLM-L6-v2 int8 graph served side by side, in one run, by

* ``floor``: a bare FastAPI + onnxruntime + tokenizers server (``floor.py``), onnxruntime's defaults;
* ``BentoML``: one ``@bentoml.service`` (``bento_service.py``) from its own venv (``make bench-peers``
  installs it in ``benchmarks/peers/.venv-bentoml``; without it the row is left out);
* ``modelbay``: ``modelbay serve --no-auth`` on a local store holding the graph, told to load it at
  start (``MODELBAY_PREWARM``, as the others load theirs), with its measured session settings (the
  tuning record made by a first start, as any restart finds it);
* ``modelbay, tuning off``: the same with ``MODELBAY_ORT_TUNE=off`` (the fixed defaults).

Every server gets the same HTTP request (``{"instances": [text, ...]}``), tokenizes it with the
same tokenizer.json (padded to the longest, truncated at 256), runs the same ONNX file with two
intra-op threads on this machine, and answers the embeddings as JSON.

Figures: cold start (process start to the first answered prediction, median of ``--cold`` fresh
processes per server, taken in rotating order), b1/b32 p50/p99 (requests alternated between the
servers one by one, so a burst of load from elsewhere hits all alike), 8-client throughput at
batch 1 (``--seconds`` per server per round, rounds in rotating order, the median kept), peak RSS
(VmHWM of the server's process tree, summed).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BENTO_VENV = HERE / ".venv-bentoml"
sys.path.insert(0, str(HERE.parent))
# the sentences and helpers of `make bench`, so both benches send the same texts
from bench_inference import SENTENCES, free_port, pct  # noqa: E402


def body(n: int) -> bytes:
    return json.dumps({"instances": SENTENCES[:n]}).encode()


@dataclass
class Server:
    name: str
    argv: list[str]
    path: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    port: int = 0
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.port = free_port()
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def first_prediction(self, payload: bytes, timeout: float = 120.0) -> float:
        """Seconds from process start to the first 200 answer to ``payload``."""
        t0 = time.perf_counter()
        self.start()
        assert self.proc is not None
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                c = self.connect()
                c.request("POST", self.path, payload, {"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                c.close()
                if r.status == 200:
                    return time.perf_counter() - t0
                if r.status not in (404, 503):
                    raise RuntimeError(f"{self.name}: {r.status} {data[:300]!r}")
            except (ConnectionError, OSError):
                pass
            time.sleep(0.005)
        raise TimeoutError(f"{self.name} did not answer in {timeout} s")

    def peak_rss_mb(self) -> float:
        """VmHWM summed over the server's process tree (BentoML runs a supervisor and a worker)."""
        assert self.proc is not None
        pids, total = [self.proc.pid], 0.0
        children: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(d.name))
        while pids:
            pid = pids.pop()
            pids.extend(children.get(pid, []))
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                pass
        return total


def timed(conn: http.client.HTTPConnection, path: str, payload: bytes) -> float:
    """Milliseconds of one request on a kept-alive connection (reopened once if the server closed it idle)."""
    for attempt in (0, 1):
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, payload, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            break
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            conn.close()
            if attempt:
                raise
    dt = (time.perf_counter() - t0) * 1000
    if r.status != 200:
        raise RuntimeError(f"{r.status}: {data[:300]!r}")
    return dt


def throughput(server: Server, seconds: float, clients: int = 8) -> float:
    payload = body(1)
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = [0.0]

    def client(i: int) -> None:
        conn = server.connect()
        timed(conn, server.path, payload)
        start.wait()
        while time.perf_counter() < stop[0]:
            timed(conn, server.path, payload)
            counts[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop[0] = time.perf_counter() + 1e9
    start.wait()
    t0 = time.perf_counter()
    stop[0] = t0 + seconds
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def prepare(tmp: Path) -> tuple[Path, Path, Path]:
    """(int8 ONNX, tokenizer.json, a local modelbay store holding them as ``minilm``)."""
    from modelbay.convert.examples import build
    from modelbay.registry import Registry
    from modelbay.storage.local import LocalStore

    print("minilm example: built once by the conversion code (minutes), then cached ...", flush=True)
    r = build("minilm")
    store = tmp / "store"
    Registry(LocalStore(store)).register_version(
        "minilm", r.onnx_path, r.metadata, dict(r.side_files), aliases=["production"]
    )
    return r.onnx_path, Path(dict(r.side_files)["tokenizer.json"]), store


def servers(model: Path, tokenizer: Path, store: Path, tmp: Path, threads: int) -> list[Server]:
    py = sys.executable
    v1 = "/v1/models/minilm:predict"
    serve = [py, "-m", "modelbay", "serve", "--no-auth", "--store", str(store), "--port", "{port}"]
    # the floor and BentoML load their one model at start; modelbay is told which to load (MODELBAY_PREWARM)
    mb_env = {
        "PYTHONPATH": f"{ROOT / 'shared'}",
        "MODELBAY_CACHE_DIR": str(tmp / "cache"),
        "MODELBAY_PREWARM": "minilm",
    }
    out = [
        Server("floor", [py, str(HERE / "floor.py"), str(model), str(tokenizer), "{port}", str(threads)], v1),
        Server("modelbay", serve, v1, mb_env),
        Server("modelbay, tuning off", serve, v1, {**mb_env, "MODELBAY_ORT_TUNE": "off"}),
    ]
    bentoml = BENTO_VENV / "bin" / "bentoml"
    if bentoml.exists():
        env = {"PEERS_MODEL": str(model), "PEERS_TOKENIZER": str(tokenizer), "PEERS_THREADS": str(threads)}
        argv = [str(bentoml), "serve", "bento_service:Embedder", "--host", "127.0.0.1", "--port", "{port}"]
        out.insert(1, Server("BentoML", argv, "/predict", {**env, "BENTOML_DO_NOT_TRACK": "true"}, cwd=HERE))
    else:
        print(f"BentoML is not installed in {BENTO_VENV} (make bench-peers installs it): its row is left out")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cold", type=int, default=3, help="fresh processes per server for the cold start")
    ap.add_argument("--b1", type=int, default=60, help="batch-1 requests per server")
    ap.add_argument("--b32", type=int, default=12, help="batch-32 requests per server")
    ap.add_argument("--seconds", type=float, default=6.0, help="8-client throughput: seconds per server per round")
    ap.add_argument("--rounds", type=int, default=2, help="throughput rounds (rotating order)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads of the peers")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--only", nargs="*", help="server names to run (the floor always runs)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="modelbay-peers-"))
    model, tokenizer, store = prepare(tmp)
    group = [
        s
        for s in servers(model, tokenizer, store, tmp, args.threads)
        if not args.only or s.name in args.only + ["floor"]
    ]
    names = [s.name for s in group]
    res: dict[str, dict[str, float]] = {n: {} for n in names}
    load = [os.getloadavg()[0]]
    try:
        # the first modelbay start tunes and records; the cold starts below are restarts that find the record
        if "modelbay" in names:
            first = group[names.index("modelbay")]
            res["modelbay"]["first start (tunes) s"] = first.first_prediction(body(1))
            first.stop()
        cold: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.cold):
            for s in group[r % len(group) :] + group[: r % len(group)]:
                cold[s.name].append(s.first_prediction(body(1)))
                s.stop()
        for n in names:
            res[n]["cold start s"] = statistics.median(cold[n])
        print("cold starts:", {n: [round(x, 2) for x in v] for n, v in cold.items()}, flush=True)

        for s in group:
            s.first_prediction(body(1))
        conns = {s.name: s.connect() for s in group}
        for batch, n in ((1, args.b1), (32, args.b32)):
            payload = body(batch)
            for s in group:  # warm-up: the first batch-32 shapes allocate
                for _ in range(3):
                    timed(conns[s.name], s.path, payload)
            lat: dict[str, list[float]] = {n: [] for n in names}
            for i in range(n):
                for s in group[i % len(group) :] + group[: i % len(group)]:
                    lat[s.name].append(timed(conns[s.name], s.path, payload))
            for name in names:
                res[name][f"b{batch} p50 ms"] = pct(lat[name], 50)
                res[name][f"b{batch} p99 ms"] = pct(lat[name], 99)
            load.append(os.getloadavg()[0])
        for c in conns.values():
            c.close()
        tps: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for s in group[r % len(group) :] + group[: r % len(group)]:
                tps[s.name].append(throughput(s, args.seconds))
        for name in names:
            res[name]["8 clients req/s"] = statistics.median(tps[name])
        for s in group:
            res[s.name]["peak RSS MiB"] = s.peak_rss_mb()
        load.append(os.getloadavg()[0])
    finally:
        for s in group:
            s.stop()
    report(res, model, load)
    total, per = import_breakdown()
    print(f"modelbay serve's imports (python -X importtime, self ms by package; total {total:.0f}):")
    print("  " + ", ".join(f"{k} {v:.0f}" for k, v in list(per.items())[:14]))
    if args.json:
        out = {"results": res, "load": load, "cpu": cpu_name(), "serve_imports_ms": per}
        args.json.write_text(json.dumps(out, indent=1))


# what `modelbay serve` imports before its first prediction: its command group, the engine, the app, uvicorn
SERVE_IMPORTS = (
    "from modelbay.cli import build; build(('serve',)); import modelbay.engine, uvicorn, modelbay.api.app, "
    "onnxruntime, modelbay.preprocess, modelbay.postprocess"
)


def import_breakdown(code: str = SERVE_IMPORTS) -> tuple[float, dict[str, float]]:
    """``python -X importtime``: total self ms, and self ms summed per top-level package, largest first."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "shared")}
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True)
    per: dict[str, float] = {}
    for line in p.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            top = parts[2].strip().split(".")[0]
            per[top] = per.get(top, 0.0) + int(parts[0]) / 1000
    return sum(per.values()), dict(sorted(per.items(), key=lambda kv: -kv[1]))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(res: dict[str, dict[str, float]], model: Path, load: list[float]) -> None:
    cols = ["cold start s", "b1 p50 ms", "b1 p99 ms", "b32 p50 ms", "b32 p99 ms", "8 clients req/s", "peak RSS MiB"]
    print()
    print(
        f"{cpu_name()}, {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in load)}; "
        f"{model.name} ({model.stat().st_size / 2**20:.1f} MiB)"
    )
    print("| server | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, r in res.items():
        cells = [f"{r[c]:.2f}" if c == "cold start s" else f"{r[c]:.1f}" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    floor = res["floor"]
    print()
    for name, r in res.items():
        if name == "floor":
            continue
        ratios = ", ".join(f"{c.split(' ')[0]} {c.split(' ')[1]} {r[c] / floor[c]:.2f}x" for c in cols)
        print(f"{name} / floor: {ratios}")
    if "first start (tunes) s" in res.get("modelbay", {}):
        print(f"modelbay's first start, tuning included: {res['modelbay']['first start (tunes) s']:.2f} s")


if __name__ == "__main__":
    main()
