"""Raw instances -> input tensors, as the version's manifest describes.

One preprocessor per loaded version, built once with the model (a tokenizer
is parsed at load time, not per request). The V1 routes, the CLI and the TUI
all go through here, so "what a text instance means" is written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import BadRequest
from ..manifest import Manifest


class Preprocessor(Protocol):
    def __call__(self, instances: list[Any]) -> dict[str, np.ndarray]: ...


def build_preprocessor(manifest: Manifest, files: dict[str, Path]) -> Preprocessor:
    pre = manifest.preprocessing
    specs = {s.name: s for s in manifest.inputs}
    if pre is None:
        from .tensors import RawPreprocessor

        return RawPreprocessor(manifest.inputs)
    if pre.kind == "text":
        from .text import TextPreprocessor

        if pre.tokenizer not in files:
            raise BadRequest(f"the version has no tokenizer file {pre.tokenizer!r}")
        return TextPreprocessor(pre, files[pre.tokenizer], specs)
    if pre.kind == "image":
        from .image import ImagePreprocessor

        return ImagePreprocessor(pre, specs[pre.input])
    if pre.kind == "tabular":
        from .tensors import TabularPreprocessor

        return TabularPreprocessor(pre, specs[pre.input])
    from .tensors import StringPreprocessor

    return StringPreprocessor(pre, specs[pre.input])


def instance_error(i: int, message: str) -> BadRequest:
    return BadRequest(f"instance {i}: {message}", instance=i)
