"""What this CPU computes for an int8 model: run in-process, or as a script under a CPU emulator.

``python -m tests.int8_probe FP32 INPUTS.npy INT8...`` prints one JSON line, a dict by
int8 file name: how far a plain onnxruntime session is from onnx's reference
evaluator (exact integer arithmetic, CPU-independent), and the accuracy gate's
numbers for that int8 model.
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
    gate = Gate(fp32, Dataset([{"x": x}]), VersionMetadata()).check(int8)
    return {"plain_vs_exact": float(np.abs(plain - exact).max()), "gate_int8": gate.int8, "passed": gate.passed}


if __name__ == "__main__":
    fp32, inputs, *int8 = sys.argv[1:]
    x = np.load(inputs)
    print(json.dumps({Path(q).name: probe(Path(fp32), Path(q), x) for q in int8}))
