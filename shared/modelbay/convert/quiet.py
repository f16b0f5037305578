"""Silence the exporters' and quantizers' chatter for the length of one call, and nothing else.

torch's exporter logs every translation step and warns about its own deprecations;
onnxruntime's quantizers nag through the *root* logger (``logging.warning``), and
``matmul_nbits_quantizer`` even calls ``logging.basicConfig(level=INFO)`` when it is
imported. A library must not change the logging or warning set-up of the process
that imports it, so each of these is undone when the call returns:

* named loggers get their level raised to ERROR, then their old level back;
* records that onnxruntime's quantization code logs on the root logger are
  dropped by a filter on the root logger (records other code logs pass);
* a placeholder handler keeps ``logging.warning``/``basicConfig`` from installing
  a stderr handler on a root logger that had none;
* warnings are filtered inside ``warnings.catch_warnings`` (the process-wide
  filter list is restored on exit; concurrent threads see the filter meanwhile,
  which Python before 3.14 offers no way around).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterable, Iterator

TORCH_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
ORT_QUANT_LOGGERS = ("onnxruntime.quantization", "onnxruntime.tools")
_ORT_QUANT_DIR = os.sep + os.path.join("onnxruntime", "quantization") + os.sep


class _DropQuantizerNags(logging.Filter):
    """Drops below-ERROR records that onnxruntime's quantization modules log on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or _ORT_QUANT_DIR not in record.pathname


@contextlib.contextmanager
def quiet(
    loggers: Iterable[str] = (),
    *,
    warning_categories: tuple[type[Warning], ...] = (),
    root_nags: bool = False,
) -> Iterator[None]:
    """Within the block: ``loggers`` at ERROR, ``warning_categories`` ignored, quantizer nags dropped."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    root = logging.getLogger()
    nag_filter = _DropQuantizerNags() if root_nags else None
    placeholder = logging.NullHandler() if root_nags and not root.handlers else None
    with warnings.catch_warnings():
        for category in warning_categories:
            warnings.simplefilter("ignore", category)
        for lg, _ in saved:
            lg.setLevel(logging.ERROR)
        if nag_filter is not None:
            root.addFilter(nag_filter)
        if placeholder is not None:
            root.addHandler(placeholder)
        try:
            yield
        finally:
            if placeholder is not None:
                root.removeHandler(placeholder)
            if nag_filter is not None:
                root.removeFilter(nag_filter)
            for lg, level in saved:
                lg.setLevel(level)


def quiet_export() -> contextlib.AbstractContextManager[None]:
    """Around a torch/onnxscript export: their loggers and their warnings."""
    return quiet(TORCH_LOGGERS, warning_categories=(DeprecationWarning, UserWarning, FutureWarning))


def quiet_quantizer() -> contextlib.AbstractContextManager[None]:
    """Around an onnxruntime quantizer call (and its first import)."""
    return quiet(ORT_QUANT_LOGGERS, root_nags=True)
