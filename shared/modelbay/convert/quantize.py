"""int8 quantization with onnxruntime's own tools, and the per-target choices.

Both targets get int8 matrix products that are exact (no saturation) on the CPUs
they deploy to, so the accuracy gate, which runs with the same exactness on any
build machine (``modelbay.cpu_features``), judges what the target computes:

* ``arm64`` (Graviton Lambda): U8S8 (uint8 activations, int8 weights),
  per-channel weights, full 8-bit range. arm64's int8 kernels (sdot/udot,
  widening multiplies) do not saturate.
* ``x86_64`` (Lambda guarantees AVX2, not VNNI): onnxruntime's U8S8 kernels
  on AVX2/AVX-512 without VNNI use ``vpmaddubsw``, whose int16 pair sums saturate
  with full-range weights (measured: the test MLP's int8 error 0.06 -> 1.8 on
  an adversarial input). ``reduce_range`` (7-bit weights: 2*255*64 fits int16)
  is exact on every x86 CPU without relying on a session option the serving
  runtime may not set (a Triton server reading the same model repository does
  not). It costs accuracy (measured on MiniLM: minimum cosine 0.960 -> 0.935
  before mixed precision), and the gate measures that cost.

Per-channel weights are on everywhere: per-tensor dynamic int8 drops MiniLM's
minimum cosine to 0.77 (measured), per-channel to 0.96.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from modelbay.convert.data import Feed, FeedReader
from modelbay.convert.quiet import quiet_quantizer
from modelbay.errors import BadRequest, InvalidModel

Method = Literal["dynamic", "static"]
CONV_OPS = {"Conv", "ConvTranspose"}
# ops onnxruntime quantizes dynamically that we want: weights of MatMul/Gemm,
# Gather for embedding tables (the bulk of a transformer's bytes), Attention/LSTM.
DYNAMIC_OPS = ["MatMul", "Gemm", "Gather", "Attention", "LSTM"]


@dataclass(frozen=True)
class QuantOptions:
    target: str = "arm64"
    per_channel: bool = True
    reduce_range: bool = False
    dynamic_weight_type: str = "QInt8"
    static_weight_type: str = "QInt8"
    static_activation_type: str = "QUInt8"
    static_reduce_range: bool = False
    calibrate_method: str = "MinMax"
    nodes_to_exclude: tuple[str, ...] = ()
    op_types: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def info(self, method: str) -> dict[str, Any]:
        static = method == "static"
        return {
            "weight_type": self.static_weight_type if static else self.dynamic_weight_type,
            "activation_type": self.static_activation_type if static else "QUInt8 (dynamic)",
            "per_channel": self.per_channel,
            "reduce_range": self.static_reduce_range if static else self.reduce_range,
            "target_arch": self.target,
        }


TARGETS = {
    "arm64": QuantOptions(target="arm64"),
    "x86_64": QuantOptions(target="x86_64", reduce_range=True, static_reduce_range=True),
}


def options_for(target: str, **overrides: Any) -> QuantOptions:
    if target not in TARGETS:
        raise BadRequest(f"unknown target {target!r}; one of {sorted(TARGETS)}")
    return replace(TARGETS[target], **overrides)


def choose_method(path: str | Path) -> Method:
    """``auto``: static QDQ when convolutions carry the model, dynamic otherwise. A transformer whose only
    convolution is its patch embedding (ViT) is a MatMul model: dynamic (its static QDQ graph does not even
    load in onnxruntime 1.32, measured)."""
    nodes = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    convs = sum(op in CONV_OPS for op in nodes)
    return "static" if convs and convs >= sum(op == "MatMul" for op in nodes) else "dynamic"


def quantizable_nodes(path: str | Path, method: Method) -> list[str]:
    """Nodes the quantizer would touch: weight-carrying ops with a constant weight."""
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    consts = inits | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    ops = set(DYNAMIC_OPS) if method == "dynamic" else CONV_OPS | {"MatMul", "Gemm"}
    return [n.name for n in model.graph.node if n.op_type in ops and any(i in consts for i in n.input)]


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A TemporaryDirectory that also catches temp files made by onnxruntime.

    ``quant_pre_process`` and the calibrator write augmented models through
    ``tempfile``; pointing ``tempfile.tempdir`` here means a failure midway
    (symbolic shape inference on transformers) leaves nothing behind.
    """
    with tempfile.TemporaryDirectory(prefix="modelbay-quant-") as d:
        old = tempfile.tempdir
        tempfile.tempdir = d
        try:
            yield Path(d)
        finally:
            tempfile.tempdir = old


def preprocess(src: Path, dst: Path, method: Method) -> tuple[Path, str]:
    """onnxruntime's quant_pre_process where it helps; returns (model, note).

    Static QDQ wants shapes on every tensor (pre-processing gives them). For
    dynamic quantization of transformers it fails (incomplete symbolic shape
    inference, measured on the MiniLM export) and buys nothing, so it is skipped.
    """
    if method == "dynamic":
        return src, "pre-processing skipped (dynamic)"
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with quiet_quantizer():
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
            return dst, "quant_pre_process: symbolic shape inference + optimisation"
        except Exception as e:  # onnxruntime raises bare Exception here
            try:
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
                return dst, f"quant_pre_process without symbolic shapes ({str(e)[:80]})"
            except Exception as e2:
                return src, f"pre-processing failed, quantizing the raw export ({str(e2)[:80]})"


def _qt(name: str) -> QuantType:
    try:
        return QuantType[name]
    except KeyError:
        raise BadRequest(f"unknown quant type {name!r}") from None


def quantize(
    src: str | Path,
    dst: str | Path,
    method: Method,
    opts: QuantOptions,
    calibration: list[Feed] | None = None,
    preprocessed: bool = False,
) -> Path:
    """Quantize ``src`` into ``dst``; temp files live and die in a scratch dir.

    ``preprocessed``: ``src`` already went through ``preprocess`` (the mixed
    precision search does it once so node names stay stable between tries).
    """
    src, dst = Path(src), Path(dst)
    with scratch_dir() as tmp, quiet_quantizer():
        model = src if preprocessed else preprocess(src, tmp / "pre.onnx", method)[0]
        try:
            if method == "dynamic":
                # the dynamic quantizer first rewrites Gemm as MatMul(+Add) named
                # "<gemm>_MatMul"; exclusions by the original name would miss it
                excluded = [x for n in opts.nodes_to_exclude for x in (n, f"{n}_MatMul")]
                quantize_dynamic(
                    model,
                    dst,
                    op_types_to_quantize=list(opts.op_types or DYNAMIC_OPS),
                    per_channel=opts.per_channel,
                    reduce_range=opts.reduce_range,
                    weight_type=_qt(opts.dynamic_weight_type),
                    nodes_to_exclude=excluded,
                    extra_options={"MatMulConstBOnly": True, **opts.extra},
                )
            elif method == "static":
                if not calibration:
                    raise BadRequest("static quantization needs calibration samples (--calibration)")
                quantize_static(
                    model,
                    dst,
                    FeedReader(calibration),
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(opts.op_types) if opts.op_types else None,
                    per_channel=opts.per_channel,
                    reduce_range=opts.static_reduce_range,
                    activation_type=_qt(opts.static_activation_type),
                    weight_type=_qt(opts.static_weight_type),
                    nodes_to_exclude=list(opts.nodes_to_exclude),
                    calibrate_method=CalibrationMethod[opts.calibrate_method],
                    extra_options=dict(opts.extra),
                )
            else:
                raise BadRequest(f"unknown quantization method {method!r}")
        except (BadRequest, InvalidModel):
            raise
        except Exception as e:  # quantizer errors are untyped
            raise InvalidModel(f"{method} quantization failed: {str(e)[:400]}") from None
    return dst


def _nbits(
    model: onnx.ModelProto,
    bits: int,
    block_size: int,
    symmetric: bool,
    accuracy_level: int,
    nodes: list[str] | None = None,
) -> onnx.ModelProto:
    """onnxruntime's MatMulNBits quantizer over the MatMuls with a constant weight (``nodes``: only those)."""
    with quiet_quantizer():  # its import calls logging.basicConfig(level=INFO)
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        q = MatMulNBitsQuantizer(
            model,
            bits=bits,
            block_size=block_size,
            is_symmetric=symmetric,
            accuracy_level=accuracy_level,
            nodes_to_include=nodes,
            op_types_to_quantize=("MatMul",),
        )
        q.process()
    return q.model.model


def compact_kept(path: Path, nodes: list[str], out: Path, block_size: int = 32) -> list[str]:
    """Store the weights of fp32-kept MatMuls as 8-bit blocks (MatMulNBits).

    Activations stay fp32 (the reason those nodes were kept); only storage
    shrinks. Measured on MiniLM: the mixed model goes 38.9 -> 24.0 MB with the
    minimum cosine unchanged, but onnxruntime's 8-bit MatMulNBits kernel is slower
    than its fp32 MatMul here (b32 83 -> 114-134 ms), so this is opt-in.
    Returns the nodes it converted.
    """
    model = onnx.load(str(path))
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name in set(nodes)]
    if not matmuls:
        return []
    onnx.save(_nbits(model, 8, block_size, True, 0, matmuls), str(out))
    return matmuls


@dataclass(frozen=True)
class Int4Options:
    """int4 weight-only quantization (onnxruntime's MatMulNBits).

    ``accuracy_level`` is the compute type of the kernel: 0 lets onnxruntime
    pick (fp32 on CPU), 4 computes in int8 (activations quantized per block at
    run time), the fast path on CPUs with int8 dot products. ``gather_int8``
    also stores embedding tables (Gather) as int8 with the dynamic quantizer.
    """

    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int = 0
    gather_int8: bool = True


def int4_candidates(path: str | Path) -> int:
    """How many MatMul/Gemm nodes with a constant weight ``quantize_int4`` would turn into MatMulNBits."""
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return sum(
        1 for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits
    )


def _gather_int8(src: Path, dst: Path) -> Path:
    """Embedding tables (Gather of a constant) as int8, before the MatMuls go int4; ``src`` when there are none."""
    model = onnx.load(str(src), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    if not any(n.op_type == "Gather" and n.input[0] in inits for n in model.graph.node):
        return src
    with quiet_quantizer():
        quantize_dynamic(src, dst, op_types_to_quantize=["Gather"], per_channel=False, weight_type=QuantType.QInt8)
    return dst


def quantize_int4(src: str | Path, dst: str | Path, opts: Int4Options | None = None) -> Path:
    """int4 weights for every MatMul (and Gemm, rewritten as MatMul + Add) with a constant weight.

    Gemm is what the exporter makes of a 2-D ``nn.Linear``; onnxruntime's
    MatMulNBits quantizer only takes MatMul, and ``ONNXModel`` has the rewrite.
    """
    from onnxruntime.quantization.onnx_model import ONNXModel

    opts = opts or Int4Options()
    src, dst = Path(src), Path(dst)
    with scratch_dir() as tmp:
        try:
            model = onnx.load(str(_gather_int8(src, tmp / "gather.onnx") if opts.gather_int8 else src))
            wrapped = ONNXModel(model)
            wrapped.replace_gemm_with_matmul()
            model = _nbits(wrapped.model, 4, opts.block_size, opts.symmetric, opts.accuracy_level)
        except Exception as e:  # quantizer errors are untyped
            raise InvalidModel(f"int4 quantization failed: {str(e)[:400]}") from None
    if not any(n.op_type == "MatMulNBits" for n in model.graph.node):
        raise InvalidModel("int4: no MatMul with a constant weight to quantize")
    onnx.save(model, str(dst))
    return dst
