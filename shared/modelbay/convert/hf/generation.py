"""The seam to the text-generation path (issue 14): causal-LM folders are recognised here and handed over.

The generation branch provides ``modelbay.convert.generation.push_folder(client, folder, *, name, aliases,
metadata, events, progress, **options) -> PushResult``, taking the recognised ``Folder``. Until it is there,
a causal LM is refused with a 4xx saying where it will go, before any export work.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from modelbay.convert.hf.folder import Folder
from modelbay.errors import BadRequest

MODULE = "modelbay.convert.generation"
ENTRY = "push_folder"


class GenerationUnavailable(BadRequest):
    status = 422
    code = "text_generation_unavailable"


def handler() -> Callable[..., Any] | None:
    """The generation path's ``push_folder``, or None when this install does not have it."""
    try:
        module = importlib.import_module(MODULE)
    except ModuleNotFoundError as e:
        if e.name != MODULE:
            raise
        return None
    fn = getattr(module, ENTRY, None)
    return fn if callable(fn) else None


def refuse(folder: Folder) -> GenerationUnavailable:
    return GenerationUnavailable(
        f"{folder.path.name} is a causal language model ({folder.architecture}): it is served by the "
        f"text-generation path ({MODULE}.{ENTRY}, issue 14), which this install does not have yet; "
        "classifiers, taggers, embedders and image classifiers push from a folder today",
        architecture=folder.architecture,
        task="text-generation",
    )
