"""What this CPU computes for an int8 model: run in-process, or as a script under a CPU emulator.

``python -m tests.int8_probe [--cpuinfo FILE] FP32 INPUTS.npy INT8...`` prints one JSON line, a dict by
int8 file name: how far a plain onnxruntime session and the engine's serving session
are from onnx's reference evaluator (exact integer arithmetic, CPU-independent), and
the accuracy gate's numbers for that int8 model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def probe(fp32: Path, int8: Path, x: np.ndarray) -> dict[str, Any]:
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    from modelbay.convert.data import Dataset
    from modelbay.convert.gate import Gate
    from modelbay.manifest import VersionMetadata

    exact = ReferenceEvaluator(str(int8)).run(None, {"x": x})[0]
    plain = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    from modelbay.engine.session import SessionConfig, build_session

    served = build_session(int8, SessionConfig()).run(None, {"x": x})[0]
    gate = Gate(fp32, Dataset([{"x": x}]), VersionMetadata()).check(int8)
    return {
        "plain_vs_exact": float(np.abs(plain - exact).max()),
        "served_vs_exact": float(np.abs(served - exact).max()),
        "gate_int8": gate.int8,
        "passed": gate.passed,
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--cpuinfo":
        # qemu-user emulates the CPU (CPUID, what onnxruntime's kernels go by) but shows the host's
        # /proc/cpuinfo: the caller passes the emulated CPU's, for modelbay's own detection
        from modelbay import cpu_features

        emulated = cpu_features.parse_cpuinfo(Path(args[1]).read_text(), "x86_64")
        cpu_features.detect = lambda *_: emulated  # type: ignore[assignment]  # test-only stand-in
        args = args[2:]
    fp32, inputs, *int8 = args
    x = np.load(inputs)
    print(json.dumps({Path(q).name: probe(Path(fp32), Path(q), x) for q in int8}))
