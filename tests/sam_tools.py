"""The SAM CLI venv (.venv-sam, Python 3.12, made by `make sam-install`) driven from tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAM_VENV = ROOT / ".venv-sam"


def sam_env() -> dict[str, str]:
    # sam build needs a python3.12 on PATH: the venv's own
    return {**os.environ, "PATH": f"{SAM_VENV / 'bin'}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}


def need_sam() -> Path:
    sam = SAM_VENV / "bin" / "sam"
    if not sam.exists():
        pytest.skip("no .venv-sam: run `make sam-install` (make test does)")
    return sam


def run_sam(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(need_sam()), *args], cwd=ROOT, env=sam_env(), capture_output=True, text=True, timeout=timeout
    )


def translated() -> dict:
    """template.yaml as the CloudFormation SAM deploys (infra/translate.py, offline)."""
    need_sam()
    r = subprocess.run(
        [str(SAM_VENV / "bin" / "python"), "infra/translate.py", "template.yaml"],
        cwd=ROOT,
        env=sam_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)
