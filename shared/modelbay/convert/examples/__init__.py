"""Real example models, built and cached: ``build(name)`` / ``build_all(cache_dir)``.

* ``minilm``: all-MiniLM-L6-v2 sentence embedder (dynamic int8, mixed precision)
* ``digits``: a small CNN on sklearn's handwritten digits (static QDQ int8)
* ``mlp``: nn.Sequential from ``module:factory`` + state_dict (dynamic int8)
* ``pii``: TF-IDF + linear SVM flagging sensitive text (skl2onnx)
* ``smollm2``: SmolLM2-135M-Instruct text generation (KV cache, int4/int8 behind the generation gate)
"""

from __future__ import annotations

import importlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelbay.convert.examples import cache
from modelbay.errors import BadRequest, NotFound
from modelbay.manifest import VersionMetadata
from modelbay.settings import Settings

NAMES = ("mlp", "digits", "pii", "minilm")
# built only when named: a cold SmolLM2 build reads a GGUF and exports 135M parameters (minutes)
ALL = (*NAMES, "smollm2")
RESULT_FILE = "result.json"


@dataclass
class ExampleResult:
    name: str
    onnx_path: Path
    side_files: dict[str, Path]
    metadata: VersionMetadata
    fp32_path: Path | None = None
    fp32_metadata: VersionMetadata | None = None
    cached: bool = False


def _load(d: Path, name: str, cached: bool) -> ExampleResult:
    r = json.loads((d / RESULT_FILE).read_text())
    return ExampleResult(
        name=name,
        onnx_path=d / r["onnx"],
        side_files={k: d / v for k, v in r["side_files"].items()},
        metadata=VersionMetadata.model_validate(r["metadata"]),
        fp32_path=d / r["fp32"] if r.get("fp32") else None,
        fp32_metadata=VersionMetadata.model_validate(r["fp32_metadata"]) if r.get("fp32_metadata") else None,
        cached=cached,
    )


def _root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir else Settings.from_env().examples_cache


def is_cached(name: str, cache_dir: str | Path | None = None, *, target: str = "arm64") -> bool:
    """Whether ``build(name)`` would return at once (a build of this exact code and these libraries exists)."""
    return name in ALL and (cache.entry(_root(cache_dir), name, target) / RESULT_FILE).is_file()


def build(
    name: str,
    cache_dir: str | Path | None = None,
    *,
    target: str = "arm64",
    force: bool = False,
    progress: Callable[[str, float | None], None] | None = None,
) -> ExampleResult:
    """Build one example (or return its cached build)."""
    if name not in ALL:
        raise NotFound(f"no example {name!r}; examples: {', '.join(ALL)}")
    root = _root(cache_dir)
    final = cache.entry(root, name, target)
    if (final / RESULT_FILE).is_file() and not force:
        return _load(final, name, cached=True)
    with cache.building(final):
        if (final / RESULT_FILE).is_file() and not force:  # another process built it while we waited
            return _load(final, name, cached=True)
        if force and final.exists():
            shutil.rmtree(final)
        started = time.monotonic()
        built = _build(root, final, name, target, progress)
        cache.record_build_seconds(root, name, time.monotonic() - started)
        return _load(built, name, cached=False)


def _build(
    root: Path, final: Path, name: str, target: str, progress: Callable[[str, float | None], None] | None
) -> Path:
    module = importlib.import_module(f"modelbay.convert.examples.{name}")
    tmp = cache.staging(root)
    try:
        prepared = module.build(tmp, target=target, progress=progress)
        for f in tmp.glob("*.pt"):  # training leftovers; the ONNX files are the product
            f.unlink()
        side = {}
        for k, p in prepared.side_files.items():
            if p.parent.resolve() != tmp.resolve():
                p = Path(shutil.copyfile(p, tmp / k))
            side[k] = p.name
        (tmp / RESULT_FILE).write_text(
            json.dumps(
                {
                    "onnx": prepared.model_path.name,
                    "fp32": prepared.fp32_path.name if prepared.int8_path else None,
                    "side_files": side,
                    "metadata": prepared.metadata.model_dump(mode="json"),
                    "fp32_metadata": prepared.fp32_metadata.model_dump(mode="json") if prepared.int8_path else None,
                },
                indent=1,
            )
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return cache.commit(tmp, final)


def build_all(
    cache_dir: str | Path | None = None,
    names: list[str] | tuple[str, ...] | None = None,
    *,
    target: str = "arm64",
    progress: Callable[[str, float | None], None] | None = None,
) -> list[ExampleResult]:
    """Every example (cached when possible), for seeding a registry."""
    unknown = [n for n in names or () if n not in ALL]
    if unknown:
        raise BadRequest(f"unknown examples {unknown}; examples: {', '.join(ALL)}")
    return [build(n, cache_dir, target=target, progress=progress) for n in names or NAMES]
