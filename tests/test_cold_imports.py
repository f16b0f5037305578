"""The serving path imports only what serving needs (cold start: every import is on the clock).

A fresh interpreter goes the way ``modelbay serve`` goes (its command group, the engine,
the app) and answers a real prediction; then what it imported is checked: no conversion
stack (torch, transformers, sklearn, onnx), no TUI, no other command group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from modelbay.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sklearn", "onnx", "onnxscript", "optimum", "textual", "skl2onnx", "scipy")

SERVE_PATH = r"""
import json, sys
from modelbay.cli import build
build(("serve",))  # what `modelbay serve` parses its command line with
from modelbay.engine import Engine
from modelbay.settings import Settings
from modelbay.storage import open_store
settings = Settings.from_env(store_url=sys.argv[1])
settings.auth = False
store = open_store(settings.store_url)
engine = Engine(store, settings)
engine.prewarm_in_background()
from modelbay.api.app import create_app
app = create_app(settings, store, engine=engine)
from starlette.testclient import TestClient
r = TestClient(app).post("/v2/models/m/infer", json={
    "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
assert r.status_code == 200, r.text
print(json.dumps(sorted(sys.modules)))
"""


def test_serving_path_imports_no_conversion_stack_nor_other_commands(tmp_path, mlp_path):
    from modelbay.storage.local import LocalStore

    Registry(LocalStore(tmp_path / "store")).register_version("m", mlp_path)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)]),
        "MODELBAY_CACHE_DIR": str(tmp_path / "cache"),
        "MODELBAY_PREWARM": "m",
        "MODELBAY_ORT_TUNE": "off",
        "HOME": str(tmp_path),
    }
    p = subprocess.run(
        [sys.executable, "-c", SERVE_PATH, str(tmp_path / "store")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    modules = set(json.loads(p.stdout.strip().splitlines()[-1]))
    assert "onnxruntime" in modules and "modelbay.engine.session" in modules  # it did serve
    loaded_heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not loaded_heavy, f"the serving path imported {loaded_heavy[:10]}"
    other_groups = sorted(
        m for m in modules if m.startswith("modelbay.cli.") and m.split(".")[2] not in ("serve", "base", "output")
    )
    assert not other_groups, f"'modelbay serve' imported other command groups: {other_groups}"
    assert "modelbay.validation" not in modules  # onnx's protobufs: registering needs them, serving does not
