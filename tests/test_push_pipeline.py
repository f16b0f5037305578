"""``modelbay push`` end to end: a PyTorch state_dict converted, int8-quantized behind the gate,
uploaded and registered on a real local server; a refusal shows its numbers and registers nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from modelbay.cli import app  # noqa: E402

FACTORY = "modelbay.convert.examples.mlp:make_mlp"


@pytest.fixture
def mlp_files(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(100, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10)).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    np.savez(tmp_path / "eval.npz", x=np.random.default_rng(0).standard_normal((64, 100)).astype(np.float32))
    return tmp_path


def test_push_converts_quantizes_gates_and_registers_with_twin(server, mlp_files):
    args = [
        "--url",
        server,
        "--json",
        "push",
        FACTORY,
        "--name",
        "mlp",
        "--state-dict",
        str(mlp_files / "w.pt"),
        "-i",
        "x:float32:[batch,100]",
        "--eval",
        str(mlp_files / "eval.npz"),
        "--alias",
        "production",
        "--with-fp32",
    ]
    r = CliRunner().invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    twin, int8 = json.loads(r.stdout[r.stdout.index("[") :])
    assert twin["quantization"]["method"] == "none" and twin["version"] == 1
    assert int8["quantization"]["method"] in ("dynamic", "mixed") and int8["quantization"]["fp32_version"] == 1
    gate = int8["metrics"]["gate"]
    assert gate["passed"] and gate["int8"]["max_abs_error"] <= gate["thresholds"]["max_abs_error"]
    assert int8["size"] < twin["size"]
    from modelbay.client import Client

    with Client(server) as c:
        assert c.aliases("mlp") == {"production": 2}
        x = np.random.default_rng(1).standard_normal((3, 100)).astype(np.float32)
        out = c.infer("mlp", {"x": x}, ref="production")
        assert out.version == 2 and next(iter(out.outputs.values())).shape == (3, 10)


def test_push_refused_by_the_gate_shows_numbers_and_registers_nothing(server, mlp_files):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelbay",
            "--url",
            server,
            "push",
            FACTORY,
            "--name",
            "mlp",
            "--state-dict",
            str(mlp_files / "w.pt"),
            "-i",
            "x:float32:[batch,100]",
            "--eval",
            str(mlp_files / "eval.npz"),
            "--quantize",
            "dynamic",
            "--max-abs-error",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert r.returncode == 2, r.stderr  # the model is refused: the caller's problem, not the server's
    assert "refused by the accuracy gate" in r.stderr and "max_abs_error" in r.stderr and "FAIL" in r.stderr
    assert "Traceback" not in r.stderr
    from modelbay.client import ApiError, Client

    with Client(server) as c, pytest.raises(ApiError) as e:
        c.versions("mlp")
    assert e.value.status == 404


def test_push_reports_typed_stages_in_order(client, mlp_files):
    """The one push function the CLI and the TUI call: conversion path, stage by stage, as typed events."""
    from modelbay.convert.pipeline import Stage, Status, push

    events = []
    result = push(
        client,
        FACTORY,
        name="staged",
        state_dict=mlp_files / "w.pt",
        input_spec="x:float32:[batch,100]",
        eval_data=mlp_files / "eval.npz",
        aliases=["production"],
        events=events.append,
    )
    assert result.manifest.version == 1 and result.gate is not None and result.gate.passed
    finished = [(e.stage, e.status) for e in events if e.status != Status.RUNNING]
    assert finished == [
        (Stage.CONVERT, Status.DONE),
        (Stage.QUANTIZE, Status.DONE),
        (Stage.GATE, Status.DONE),
        (Stage.UPLOAD, Status.DONE),
        (Stage.REGISTER, Status.DONE),
    ]
    started = [e.stage for e in events if e.status == Status.RUNNING and e.sent is None]
    assert started[0] == Stage.CONVERT and started.index(Stage.GATE) < started.index(Stage.UPLOAD)
    sent = [(e.sent, e.total) for e in events if e.sent is not None]
    assert sent and sent[-1][0] == sent[-1][1] == result.manifest.size


def test_push_refused_marks_the_gate_failed_and_uploads_nothing(client, mlp_files):
    from modelbay.convert.gate import GateFailed, GateThresholds
    from modelbay.convert.pipeline import Stage, Status, push

    events = []
    with pytest.raises(GateFailed):
        push(
            client,
            FACTORY,
            name="refused",
            state_dict=mlp_files / "w.pt",
            input_spec="x:float32:[batch,100]",
            eval_data=mlp_files / "eval.npz",
            quantize_mode="dynamic",
            mixed_precision=False,
            thresholds=GateThresholds(max_abs_error=0.0),
            events=events.append,
        )
    states = {e.stage: e.status for e in events}
    assert states[Stage.GATE] == Status.FAILED and Stage.UPLOAD not in states
