"""What the isolation and memory defences of issue 11 cost, and which memory mechanism works.

    python benchmarks/bench_security.py

1. Building a session of a 192 MiB model three ways: from the disk cache's path (what the server did,
   and what let a model read a file beside it), alone in a private directory (``engine.session.alone``,
   a hard link: what it does now), and from bytes in memory. Load time and peak RSS, each in a fresh
   process, median of 3.
2. ``ConstantOfShape(n)`` (a 60-byte request asking for n floats), in a fresh process per mechanism:
   onnxruntime's default arena, the default arena with shrinkage after each run, and the capped shared
   arena with shrinkage (what modelbay uses): RSS kept after a 256 MiB run, and what a 1 GiB request does.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]
MB = 1 << 20


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _rss() -> int:
    return _status("VmRSS")


def _peak() -> int:
    # VmHWM, not ru_maxrss: ru_maxrss survives execve, so a child would report its parent's peak
    return _status("VmHWM")


def child_build(mode: str, path: str) -> dict:
    import onnxruntime as ort

    from modelbay.engine.session import SessionConfig, alone, session_options

    opts = session_options(SessionConfig(intra_op_threads=1))
    base = _peak()
    t = time.perf_counter()
    if mode == "cache path":
        ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    elif mode == "private dir":
        with alone(Path(path)) as private:
            ort.InferenceSession(str(private), opts, providers=["CPUExecutionProvider"])
    else:
        ort.InferenceSession(Path(path).read_bytes(), opts, providers=["CPUExecutionProvider"])
    return {"seconds": time.perf_counter() - t, "peak_mb": _peak() / MB, "peak_before_mb": base / MB}


def child_memory(mode: str, path: str) -> dict:
    import numpy as np
    import onnxruntime as ort

    from modelbay.engine.runs import SHRINK
    from modelbay.engine.session import SessionConfig, build_session

    cap = 512 * MB if mode == "capped arena + shrink" else None
    session = build_session(Path(path), SessionConfig(intra_op_threads=1, memory_limit_bytes=cap))

    def run(n: int) -> str:
        options = ort.RunOptions()
        if mode != "default arena":
            options.add_run_config_entry(*SHRINK)
        t = time.perf_counter()
        try:
            session.run(None, {"n": np.array([n], np.int64)}, options)
            return f"ran in {time.perf_counter() - t:.2f} s"
        except Exception as e:
            return f"refused in {time.perf_counter() - t:.2f} s ({type(e).__name__})"

    run(1000)
    warm = _rss()
    run(1 << 26)
    kept = _rss() - warm
    big = run(1 << 28)
    return {"kept_after_256mib_mb": kept / MB, "one_gib_request": big, "kept_after_1gib_mb": (_rss() - warm) / MB}


def _in_child(kind: str, mode: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, mode, str(path)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests import malicious_models as mm

    tmp = Path(tempfile.mkdtemp(prefix="bench-security-"))
    w = numpy_helper.from_array(np.random.default_rng(0).random((48 * 1024 * 1024 // 64, 64), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["w", "i"], ["y"], axis=0)],
        "big",
        [helper.make_tensor_value_info("i", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [w],
    )
    big = tmp / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), big)
    print(f"session build of a {big.stat().st_size / MB:.0f} MiB model (fresh process each, median of 3)")
    for mode in ("cache path", "private dir", "bytes"):
        runs = [_in_child("build", mode, big) for _ in range(3)]
        secs = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak_mb"] - r["peak_before_mb"] for r in runs)
        print(f"  {mode:<12} {secs:6.2f} s   peak RSS +{peak:5.0f} MiB")

    cos = mm.save(mm.constant_of_shape_model(), tmp / "cos.onnx")
    print("ConstantOfShape(n): RSS kept after a 256 MiB run, and a 1 GiB request")
    for mode in ("default arena", "default arena + shrink", "capped arena + shrink"):
        r = _in_child("memory", mode, cos)
        print(
            f"  {mode:<23} kept {r['kept_after_256mib_mb']:5.0f} MiB; 1 GiB request {r['one_gib_request']}, "
            f"then kept {r['kept_after_1gib_mb']:5.0f} MiB"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        kind, mode, path = sys.argv[2:5]
        print(json.dumps((child_build if kind == "build" else child_memory)(mode, path)))
    else:
        main()
