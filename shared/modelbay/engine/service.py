"""The two inference operations, transport-free: tensors in/out (OIP) and instances in/predictions out (V1).

Both fill a ``Timings`` as they go, so whichever adapter called them can emit
Server-Timing and the metrics event, even when they fail half way.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from ..errors import BadRequest
from .engine import Engine, check_instances
from .model import LoadedModel
from .signature import check_feeds
from .timing import Timings


def infer(engine: Engine, tenant: str, name: str, ref: str | int | None, inputs: Mapping[str, np.ndarray],
          outputs: list[str] | None, timings: Timings) -> tuple[LoadedModel, dict[str, np.ndarray]]:
    """Run validated tensors; ``outputs`` None means all of them."""
    model = engine.get(tenant, name, ref, timings)
    check_feeds(model.manifest.inputs, inputs)
    for spec in model.manifest.inputs:  # a dynamic first axis is the batch: the instance limit applies
        if spec.shape and not isinstance(spec.shape[0], int):
            check_instances(int(inputs[spec.name].shape[0]), engine.settings)
            break
    if outputs is not None:
        known = set(model.output_names)
        for o in outputs:
            if o not in known:
                raise BadRequest(f"unknown output {o!r}; the model's outputs are {model.output_names}", output=o)
        if len(set(outputs)) != len(outputs):
            raise BadRequest("an output is requested twice")
    t0 = time.perf_counter()
    result = model.run(inputs, outputs)
    timings.inference_ms = (time.perf_counter() - t0) * 1000
    return model, result


def predict(engine: Engine, tenant: str, name: str, ref: str | int | None, instances: list[Any],
            parameters: Mapping[str, Any], timings: Timings) -> tuple[LoadedModel, list[Any]]:
    """Raw instances -> preprocessing -> one batched run -> postprocessing."""
    if not isinstance(instances, list):
        raise BadRequest("'instances' must be a list")
    check_instances(len(instances), engine.settings)
    if not isinstance(parameters, Mapping):
        raise BadRequest("'parameters' must be an object")
    model = engine.get(tenant, name, ref, timings)
    t0 = time.perf_counter()
    feeds = model.preprocessor(instances)
    check_feeds(model.manifest.inputs, feeds)
    t1 = time.perf_counter()
    outputs = model.run(feeds, model.postprocessor.outputs)
    t2 = time.perf_counter()
    predictions = model.postprocessor(outputs, feeds, len(instances), parameters)
    t3 = time.perf_counter()
    timings.preprocess_ms = (t1 - t0) * 1000
    timings.inference_ms = (t2 - t1) * 1000
    timings.postprocess_ms = (t3 - t2) * 1000
    return model, predictions
