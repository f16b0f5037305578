"""Recognising and loading what the user hands to ``modelbay convert``.

Kinds: ``onnx`` (used as is), ``exported_program`` (``torch.export`` .pt2),
``torchscript`` (.pt/.pth/.ts saved by ``torch.jit.save``), ``torch_module``
(``module:factory`` plus an optional state_dict file, or an nn.Module object),
``sklearn`` (a pickled estimator/pipeline, or the object). Pickles execute code
when loaded: only load your own files.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbay.errors import BadRequest, InvalidModel


@dataclass
class Source:
    kind: str
    obj: Any  # the loaded model (a path for onnx)
    origin: str  # what the user passed, for messages and metadata


def _is_torchscript_zip(path: Path) -> bool:
    # torch.jit.save archives carry a code/ folder; plain torch.save state_dicts do not.
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.startswith("code/") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


@contextlib.contextmanager
def _cwd_importable() -> Iterator[str]:
    """Modules in the current directory import, as with ``python -m``: ``modelbay push my_pkg.nets:make_net``
    works from the folder holding ``my_pkg`` (the console script's sys.path lacks it)."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
        importlib.invalidate_caches()
    try:
        yield cwd
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def _load_factory(spec: str, state_dict: str | Path | None):
    import torch

    mod_name, _, fn_name = spec.partition(":")
    if not mod_name or not fn_name:
        raise BadRequest(f"{spec!r}: expected module:factory, e.g. mypkg.models:make_mlp")
    with _cwd_importable() as cwd:
        try:
            factory = getattr(importlib.import_module(mod_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise BadRequest(f"cannot import {spec}: {e} (looked in {cwd} and the installed packages)") from None
        model = factory()
    if not isinstance(model, torch.nn.Module):
        raise InvalidModel(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    if state_dict is not None:
        p = Path(state_dict)
        if not p.is_file():
            raise BadRequest(f"state_dict file {p} not found")
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a bad file
            raise InvalidModel(f"{p.name} is not a loadable state_dict: {e}") from None
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        try:
            model.load_state_dict(sd)
        except (RuntimeError, TypeError) as e:
            raise InvalidModel(f"state_dict does not fit {spec}: {str(e).splitlines()[0]}") from None
    return model.eval()


def load_source(model: Any, *, state_dict: str | Path | None = None) -> Source:
    """Turn a path, a ``module:factory`` string or a model object into a Source (a Source is returned as is)."""
    if isinstance(model, Source):
        return model
    if not isinstance(model, (str, Path)):
        return _from_object(model)
    text = str(model)
    p = Path(text)
    if not p.exists() and ":" in text and not text.endswith((".onnx", ".pt2", ".pt", ".pkl")):
        return Source("torch_module", _load_factory(text, state_dict), text)
    if not p.is_file():
        raise BadRequest(f"{text}: no such model file (or module:factory)")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return Source("onnx", p, text)
    if suffix == ".pt2":
        import torch

        try:
            return Source("exported_program", torch.export.load(p), text)
        except Exception as e:
            raise InvalidModel(f"{p.name} is not a torch.export program: {str(e).splitlines()[0]}") from None
    if suffix in (".pt", ".pth", ".ts", ".jit"):
        if _is_torchscript_zip(p):
            import torch

            try:
                return Source("torchscript", torch.jit.load(str(p), map_location="cpu").eval(), text)
            except Exception as e:
                raise InvalidModel(f"{p.name} is not loadable TorchScript: {str(e).splitlines()[0]}") from None
        raise BadRequest(
            f"{p.name} looks like a state_dict, not a whole model: pass the module as "
            "module:factory and this file with --state-dict"
        )
    if suffix in (".pkl", ".pickle", ".joblib"):
        try:
            if suffix == ".joblib":
                import joblib

                obj = joblib.load(p)
            else:
                with open(p, "rb") as f:
                    obj = pickle.load(f)
        except Exception as e:
            raise InvalidModel(f"cannot unpickle {p.name}: {e}") from None
        return _from_object(obj, origin=text)
    raise BadRequest(f"{p.name}: unknown model format {suffix!r} (onnx, pt2, pt/pth TorchScript, pkl/joblib)")


def _from_object(obj: Any, origin: str | None = None) -> Source:
    origin = origin or type(obj).__name__
    mod = type(obj).__module__
    if mod.startswith("sklearn") or (hasattr(obj, "fit") and hasattr(obj, "predict")):
        return Source("sklearn", obj, origin)
    if mod.startswith("torch"):
        import torch

        if isinstance(obj, torch.export.ExportedProgram):
            return Source("exported_program", obj, origin)
        if isinstance(obj, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
            return Source("torchscript", obj, origin)
    try:
        import torch

        if isinstance(obj, torch.nn.Module):
            return Source("torch_module", obj.eval(), origin)
    except ImportError:
        pass
    raise BadRequest(f"don't know how to convert a {type(obj).__name__}")
