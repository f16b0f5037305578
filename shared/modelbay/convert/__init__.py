"""Conversion and quantization: framework model -> verified (int8) ONNX version.

The core package is a Lambda layer without torch, so nothing here imports torch,
transformers, scikit-learn or skl2onnx at module level: each loads inside the
function that needs it. ``onnx``/``onnxruntime``/``numpy`` are core dependencies.
"""

from __future__ import annotations

from modelbay.convert.gate import GateFailed, GateReport, GateThresholds
from modelbay.convert.quantize import TARGETS, QuantOptions
from modelbay.convert.spec import parse_input_spec

__all__ = [
    "TARGETS",
    "GateFailed",
    "GateReport",
    "GateThresholds",
    "QuantOptions",
    "convert",
    "parse_input_spec",
    "prepare",
]


def convert(*args, **kwargs):
    from modelbay.convert.converter import convert as _convert

    return _convert(*args, **kwargs)


def prepare(*args, **kwargs):
    from modelbay.convert.pipeline import prepare as _prepare

    return _prepare(*args, **kwargs)
