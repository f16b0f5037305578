"""int8 numerics the gate can trust on any CPU.

onnxruntime's U8S8 kernels saturate on x86-64 without VNNI (AVX2, AVX-512 before
Cascade Lake) and are exact on VNNI x86 and arm64 (modelbay.cpu_features). The
gate's sessions ask onnxruntime for exact products, and the x86_64 target uses
7-bit weights, so what the gate measures is what the target computes. These
tests compare onnxruntime with onnx's reference evaluator, which does the
integer arithmetic in numpy, the same on every CPU.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from modelbay.convert.converter import session
from modelbay.convert.quantize import options_for, quantize
from modelbay.cpu_features import CpuFeatures, detect, parse_cpuinfo
from tests.int8_probe import probe
from tests.onnx_models import saturating_mlp

SETTINGS = [(m, rr, w) for m in ("dynamic", "static") for rr in (False, True) for w in ("QInt8", "QUInt8")]


@pytest.fixture(scope="module")
def model_and_inputs(tmp_path_factory):
    model, x = saturating_mlp()
    d = tmp_path_factory.mktemp("sat")
    onnx.save(model, str(d / "fp32.onnx"))
    np.save(d / "x.npy", x)
    return d, x


def _quantized(d, x, method, reduce_range, weights):
    out = d / f"{method}-{int(reduce_range)}-{weights}.onnx"
    if not out.exists():
        opts = options_for(
            "arm64",
            reduce_range=reduce_range,
            static_reduce_range=reduce_range,
            dynamic_weight_type=weights,
            static_weight_type=weights,
        )
        quantize(d / "fp32.onnx", out, method, opts, [{"x": x}])
    return out


def _exact(path, x):
    return ReferenceEvaluator(str(path)).run(None, {"x": x})[0]


@pytest.mark.parametrize("method, reduce_range, weights", SETTINGS)
def test_gate_sessions_compute_exact_int8_on_every_cpu(model_and_inputs, method, reduce_range, weights):
    d, x = model_and_inputs
    q = _quantized(d, x, method, reduce_range, weights)
    got = session(q).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, _exact(q, x), atol=1e-5)


@pytest.mark.parametrize("method, reduce_range, weights", SETTINGS)
def test_plain_sessions_saturate_only_full_range_u8s8_on_cpus_without_vnni(
    model_and_inputs, method, reduce_range, weights
):
    """CPU-dependent: which branch runs depends on this machine (both are asserted where they apply).

    7-bit weights (the x86_64 target) and uint8 weights are exact everywhere; full-range
    int8 weights (the arm64 target) are exact on arm64 and VNNI x86, and saturate elsewhere.
    """
    import onnxruntime as ort

    d, x = model_and_inputs
    q = _quantized(d, x, method, reduce_range, weights)
    plain = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    error = float(np.abs(plain - _exact(q, x)).max())
    if reduce_range or weights == "QUInt8" or not detect().u8s8_saturates:
        assert error < 1e-5
    else:
        assert error > 0.1  # saturated: the reason the gate must not use plain sessions


@pytest.mark.parametrize("method, reduce_range, weights", SETTINGS)
def test_served_int8_equals_the_gate_session(model_and_inputs, tmp_path, method, reduce_range, weights):
    """What the engine serves is what the gate measured, on this CPU whatever it is (qemu's Haswell below)."""
    from modelbay.engine import Engine
    from modelbay.registry import Registry
    from modelbay.settings import Settings
    from modelbay.storage.local import LocalStore

    d, x = model_and_inputs
    q = _quantized(d, x, method, reduce_range, weights)
    store = LocalStore(tmp_path / "store")
    Registry(store).register_version("sat", q)
    engine = Engine(store, Settings(store_url=store.url, cache_dir=tmp_path / "cache"))
    served = engine.get("default", "sat").run({"x": x})["y"]
    gate = session(q).run(None, {"x": x})[0]
    np.testing.assert_allclose(served, gate, atol=1e-5)
    np.testing.assert_allclose(served, _exact(q, x), atol=1e-5)


def test_serving_sessions_ask_for_exact_int8_where_it_matters():
    """CPU-dependent, so both CPUs are described: the rewrite needs the extended level where U8S8 saturates."""
    import onnxruntime as ort

    from modelbay.cpu_features import exact_int8
    from modelbay.engine.session import SessionConfig, session_options

    level = ort.GraphOptimizationLevel
    opts = session_options(SessionConfig(optimization="basic"))
    assert opts.get_session_config_entry("session.x64quantprecision") == "1"
    rome, graviton = (parse_cpuinfo(CPUINFO[n][1], CPUINFO[n][0]) for n in ("epyc-rome", "graviton2"))
    for cpu, basic_becomes in [(rome, level.ORT_ENABLE_EXTENDED), (graviton, level.ORT_ENABLE_BASIC)]:
        for chosen, want in [(level.ORT_ENABLE_BASIC, basic_becomes), (level.ORT_ENABLE_ALL, level.ORT_ENABLE_ALL)]:
            o = ort.SessionOptions()
            o.graph_optimization_level = chosen
            exact_int8(o, cpu)
            assert o.graph_optimization_level == want, (cpu.model, chosen)
            assert o.get_session_config_entry("session.x64quantprecision") == "1"


def test_x86_64_target_is_exact_without_session_options():
    opts = options_for("x86_64")
    assert opts.reduce_range and opts.static_reduce_range and opts.dynamic_weight_type == "QInt8"
    assert not options_for("arm64").reduce_range


def test_gate_records_the_cpu_it_ran_on(model_and_inputs):
    from modelbay.convert.data import Dataset
    from modelbay.convert.gate import Gate
    from modelbay.manifest import VersionMetadata

    d, x = model_and_inputs
    q = _quantized(d, x, "dynamic", False, "QInt8")
    report = Gate(d / "fp32.onnx", Dataset([{"x": x}]), VersionMetadata()).check(q)
    cpu = report.as_dict()["extra"]["cpu"]
    assert cpu["arch"] == detect().arch and isinstance(cpu["u8s8_saturates"], bool)
    assert report.extra["session_config"] == {"session.x64quantprecision": "1"}


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.skipif(
    platform.machine() != "x86_64" or QEMU is None, reason="needs qemu-user (make test installs it) on an x86_64 host"
)
def test_gate_verdict_is_the_same_on_an_emulated_cpu_without_vnni(model_and_inputs):
    """The defect of issue 9, reproduced on any x86_64 host: qemu's Haswell has AVX2 and no VNNI.

    There plain sessions saturate with full-range int8 weights (what the old gate
    measured) and are exact with 7-bit or uint8 weights, while the gate's numbers
    equal those of this machine, whatever its CPU, for every setting, and the
    engine's serving sessions compute the exact result there too.
    """
    d, x = model_and_inputs
    models = {setting: _quantized(d, x, *setting) for setting in SETTINGS}
    (d / "haswell.cpuinfo").write_text(CPUINFO["epyc-rome"][1])  # AVX2 without VNNI, as qemu's Haswell
    r = subprocess.run(
        [QEMU, "-cpu", "Haswell", sys.executable, "-m", "tests.int8_probe", "--cpuinfo", str(d / "haswell.cpuinfo"),
         str(d / "fp32.onnx"), str(d / "x.npy"), *map(str, models.values())],
        capture_output=True, text=True, timeout=900, env={"PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    haswell = json.loads(r.stdout.strip().splitlines()[-1])
    for (_method, reduce_range, weights), q in models.items():
        here, there = probe(d / "fp32.onnx", q, x), haswell[q.name]
        saturates = not reduce_range and weights == "QInt8"
        assert (there["plain_vs_exact"] > 0.1) if saturates else (there["plain_vs_exact"] < 1e-5), q.name
        assert there["gate_int8"]["max_abs_error"] == pytest.approx(here["gate_int8"]["max_abs_error"], abs=1e-6)
        assert there["passed"] == here["passed"]
        assert there["served_vs_exact"] < 1e-5, q.name  # the engine's sessions too, at its default level


CPUINFO = {
    "epyc-rome": (
        "x86_64",
        "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7R32\nflags\t\t: fpu sse4_1 sse4_2 avx avx2 fma bmi2\n",
        True,
    ),
    "skylake-sp": (
        "x86_64",
        "vendor_id\t: GenuineIntel\nmodel name\t: Intel Xeon Platinum 8175M\n"
        "flags\t\t: avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl\n",
        True,
    ),
    "cascade-lake": (
        "x86_64",
        "vendor_id\t: GenuineIntel\nmodel name\t: Intel Xeon Platinum 8259CL\n"
        "flags\t\t: avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni\n",
        False,
    ),
    "alder-lake": (
        "x86_64",
        "vendor_id\t: GenuineIntel\nmodel name\t: 12th Gen Intel Core i7\nflags\t\t: avx avx2 avx_vnni\n",
        False,
    ),
    "sapphire-rapids": (
        "x86_64",
        "vendor_id\t: GenuineIntel\nmodel name\t: Intel Xeon 8488C\n"
        "flags\t\t: avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni amx_tile amx_int8\n",
        False,
    ),
    "graviton2": (
        "aarch64",
        "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd aes crc32 atomics asimddp\n"
        "CPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\nprocessor\t: 1\nFeatures\t: fp\n",
        False,
    ),
}


@pytest.mark.parametrize("name", sorted(CPUINFO))
def test_cpuinfo_tells_where_u8s8_saturates(name):
    machine, text, saturates = CPUINFO[name]
    cpu = parse_cpuinfo(text, machine)
    assert cpu.u8s8_saturates is saturates
    assert cpu.arch == ("arm64" if machine == "aarch64" else "x86_64")
    if name == "graviton2":
        assert cpu.dotprod and cpu.vendor == "0x41" and not cpu.avx2
    else:
        assert cpu.avx2 and cpu.model


def test_this_machine_is_described():
    cpu = detect()
    assert isinstance(cpu, CpuFeatures) and cpu.arch
    assert set(cpu.as_dict()) >= {"arch", "vendor", "avx2", "vnni", "dotprod", "u8s8_saturates"}
