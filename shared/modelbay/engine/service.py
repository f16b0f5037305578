"""The inference service, transport-free: what the /v1 and /v2 routes, the Lambda handler and the benchmarks call.

It holds the engine, the metrics sink and the settings. ``infer`` (Open
Inference Protocol tensors) and ``predict`` (V1 raw instances) each return one
``Inference``: the payload, the version that served it and the request's
timings. Every call records exactly one metrics event, success or failure,
its error type taken from the exception; adapters only decode, call and encode.

A request may arrive still encoded (``bytes``): it is decoded here, inside the
accounting, so a malformed body counts as the client error it is. The reference
is resolved before the body is decoded: metrics keep series only for versions
that exist (a request for a name nobody serves is logged, not given a series of
its own, or a caller could grow the metrics without bound).

``admission`` bounds the inferences in flight (per tenant and in all); the
HTTP adapter takes a slot before it hands a request to a thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import numpy as np

from ..capture import Capturer
from ..errors import BadRequest, ModelbayError, NotFound
from ..manifest import Manifest
from ..metrics import ErrorType, MetricsSink
from ..protocols import oip, v1
from ..settings import Settings
from ..shadow import ShadowRunner
from .admission import Admission
from .engine import Engine, check_instances
from .errors import InferenceFailed, InferenceTimeout, LoadFailure
from .model import LoadedModel
from .signature import check_feeds
from .timing import Timings

log = logging.getLogger("modelbay.inference")
P = TypeVar("P")


@dataclass
class Inference(Generic[P]):
    payload: P
    version: int
    timings: Timings


@dataclass
class ModelStatus:
    manifest: Manifest
    loaded: bool  # a session for it is in this process's cache
    tuning: dict[str, Any] | None = None  # the measured session settings it runs with (engine.autotune)


def _rows(a: Any) -> list[Any]:
    """An output's rows, for comparing a shadow's answers (a scalar output is one row)."""
    return list(np.atleast_1d(a))


def error_type(exc: BaseException) -> ErrorType:
    """The metrics error type of a failed request."""
    if isinstance(exc, LoadFailure):
        return "load_failure"
    if isinstance(exc, InferenceTimeout):
        return "timeout"
    if isinstance(exc, InferenceFailed):
        return "inference_failed"
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, ModelbayError) and 400 <= exc.status < 500:
        return "bad_request"
    return "internal"


class InferenceService:
    def __init__(
        self,
        engine: Engine,
        metrics: MetricsSink,
        settings: Settings | None = None,
        capture: Capturer | None = None,
        shadows: ShadowRunner | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.settings = settings or engine.settings
        self.admission = Admission(self.settings.max_inferences, self.settings.max_tenant_inferences)
        s = self.settings
        self.capture = capture or Capturer(
            engine.store,
            buffer_records=s.capture_buffer_records,
            batch_records=s.capture_batch_records,
            flush_seconds=s.capture_flush_seconds,
            config_ttl=s.alias_ttl,
        )
        self.shadows = shadows or ShadowRunner(s.shadow_queue)

    # ------------------------------------------------------------ inference
    def infer(
        self,
        tenant: str,
        name: str,
        ref: str | int | None,
        request: oip.InferRequest | bytes,
        *,
        header_length: str | int | None = None,
        timings: Timings | None = None,
        route_key: str | None = None,
    ) -> Inference[oip.InferResponse]:
        """OIP: tensors in, the requested outputs (all by default) out.

        ``header_length``: the JSON part's length when ``request`` is a body with binary tensors.
        ``route_key``: keeps a caller on one side of a split alias (``modelbay.routing``).
        """
        timings = timings or Timings.start()
        with _Accounted(self, tenant, name, timings) as call:
            manifest = self.engine.resolve_timed(tenant, name, ref, timings, route_key)
            req = request if isinstance(request, oip.InferRequest) else oip.decode_request(request, header_length)
            call.instances = req.batch
            response = self._infer(tenant, manifest, req, timings)
        self._capture(tenant, name, timings, req.inputs, response.outputs, req.id)
        if response.outputs:
            first = response.outputs[0][0]

            def shadow_rows(version: int) -> list[Any]:
                out = self._infer(tenant, self.engine.resolve(tenant, name, version), req, Timings.start()).outputs
                return _rows(next(o[1] for o in out if o[0] == first))

            self._shadow(tenant, name, ref, timings, lambda: _rows(response.outputs[0][1]), shadow_rows)
        return Inference(response, response.model_version, timings)

    def _infer(self, tenant: str, manifest: Manifest, req: oip.InferRequest, timings: Timings) -> oip.InferResponse:
        name = manifest.name
        model = self.engine.load(tenant, manifest, timings)
        check_feeds(model.manifest.inputs, req.inputs)
        for spec in model.manifest.inputs:  # a dynamic first axis is the batch: the instance limit applies
            if spec.shape and not isinstance(spec.shape[0], int):
                check_instances(int(req.inputs[spec.name].shape[0]), self.settings)
                break
        wanted = [o.name for o in req.outputs] if req.outputs is not None else None
        if wanted is not None:
            known = set(model.output_names)
            for o in wanted:
                if o not in known:
                    raise BadRequest(f"unknown output {o!r}; the model's outputs are {model.output_names}", output=o)
            if len(set(wanted)) != len(wanted):
                raise BadRequest("an output is requested twice")
        t0 = time.perf_counter()
        results = model.run(req.inputs, wanted)
        timings.inference_ms = (time.perf_counter() - t0) * 1000
        return oip.InferResponse(name, model.version, _outputs(model, req, results), req.id)

    def predict(
        self,
        tenant: str,
        name: str,
        ref: str | int | None,
        request: v1.PredictRequest | bytes,
        *,
        timings: Timings | None = None,
        route_key: str | None = None,
    ) -> Inference[list[Any]]:
        """V1: raw instances -> preprocessing -> one batched run -> postprocessing -> predictions."""
        timings = timings or Timings.start()
        with _Accounted(self, tenant, name, timings) as call:
            manifest = self.engine.resolve_timed(tenant, name, ref, timings, route_key)
            req = request if isinstance(request, v1.PredictRequest) else v1.decode_request(request)
            if not isinstance(req.instances, list):
                raise BadRequest("'instances' must be a list")
            call.instances = len(req.instances)
            model, predictions = self._predict(tenant, manifest, req, timings)
        self._capture(tenant, name, timings, req.instances, predictions, None)
        self._shadow(
            tenant,
            name,
            ref,
            timings,
            lambda: predictions,
            lambda version: self._predict(tenant, self.engine.resolve(tenant, name, version), req, Timings.start())[1],
        )
        return Inference(predictions, model.version, timings)

    def _predict(
        self, tenant: str, manifest: Manifest, req: v1.PredictRequest, timings: Timings
    ) -> tuple[LoadedModel, list[Any]]:
        check_instances(len(req.instances), self.settings)
        if not isinstance(req.parameters, Mapping):
            raise BadRequest("'parameters' must be an object")
        model = self.engine.load(tenant, manifest, timings)
        t0 = time.perf_counter()
        feeds = model.preprocessor(req.instances)
        check_feeds(model.manifest.inputs, feeds)
        t1 = time.perf_counter()
        outputs = model.run(feeds, model.postprocessor.outputs)
        t2 = time.perf_counter()
        predictions: list[Any] = model.postprocessor(outputs, feeds, len(req.instances), req.parameters)
        t3 = time.perf_counter()
        timings.preprocess_ms = (t1 - t0) * 1000
        timings.inference_ms = (t2 - t1) * 1000
        timings.postprocess_ms = (t3 - t2) * 1000
        return model, predictions

    def _shadow(
        self,
        tenant: str,
        name: str,
        ref: str | int | None,
        timings: Timings,
        answers: Callable[[], list[Any]],
        run: Callable[[int], list[Any]],
    ) -> None:
        """Queue a sampled shadow run of this request (``modelbay.shadow``): it runs after the answer is sent."""
        try:
            found = self.engine.resolver.shadow(tenant, name, ref)
            if found is None:
                return
            alias, shadow = found
            if shadow.version == timings.version or not self.shadows.sampled(shadow.rate):
                return
            self.shadows.submit(
                tenant,
                name,
                alias,
                shadow.version,
                shadow.rate,
                timings.total_ms(),
                answers(),  # made only for a sampled request: outputs can be large
                lambda: run(shadow.version),
            )
        except Exception:  # a shadow must never fail a prediction
            log.exception("shadow scheduling failed")

    def _capture(
        self, tenant: str, name: str, timings: Timings, inputs: Any, outputs: Any, request_id: str | None
    ) -> None:
        """Hand a sampled request to the capture buffer (``modelbay.capture``): an append, nothing more."""
        try:
            config = self.capture.sampled(tenant, name)
            if config is not None and timings.version is not None:
                if isinstance(outputs, list) and outputs and isinstance(outputs[0], tuple):  # OIP (name, array, bin)
                    outputs = {o[0]: o[1] for o in outputs}
                self.capture.record(
                    config,
                    tenant,
                    name,
                    timings.version,
                    timings.route,
                    timings.total_ms(),
                    inputs,
                    outputs,
                    request_id,
                )
        except Exception:  # capture must never fail a prediction
            log.exception("capture failed")

    def _record(self, tenant: str, name: str, instances: int, timings: Timings, exc: BaseException | None) -> None:
        if timings.version is None:  # the reference never resolved: no series for a name nobody serves
            log.info("%s/%r: not served (%s)", tenant, name[:80], error_type(exc) if exc is not None else "ok")
            return
        try:
            event = timings.event(name, timings.version, instances, error_type(exc) if exc is not None else None)
            event.tenant = tenant
            self.metrics.record(event)
        except Exception:  # a metrics sink must never fail a prediction
            log.exception("metrics sink failed")

    # ------------------------------------------------------------ metadata
    def resolve(self, tenant: str, name: str, ref: str | int | None = None) -> Manifest:
        return self.engine.resolve(tenant, name, ref)

    def versions(self, tenant: str, name: str) -> list[int]:
        """Every live version of a model, oldest first."""
        return self.engine.resolver.registry(tenant).version_numbers(name)

    def status(self, tenant: str, name: str, ref: str | int | None = None) -> ModelStatus:
        manifest = self.engine.resolve(tenant, name, ref)
        model = self.engine.cached(tenant, manifest)
        return ModelStatus(manifest, model is not None, model.tuning if model is not None else None)

    def ready(self, tenant: str, name: str, ref: str | int | None = None) -> LoadedModel:
        """Ready means loaded: this loads a cold model (an alias's stable version)."""
        return self.engine.load(tenant, self.engine.resolve(tenant, name, ref))


class _Accounted:
    """A block that records exactly one metrics event when it ends, succeeded or failed."""

    __slots__ = ("instances", "name", "service", "tenant", "timings")

    def __init__(self, service: InferenceService, tenant: str, name: str, timings: Timings) -> None:
        self.service, self.tenant, self.name, self.timings = service, tenant, name, timings
        self.instances = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, Exception):  # not on KeyboardInterrupt or SystemExit
            self.service._record(self.tenant, self.name, self.instances, self.timings, exc)


def _outputs(
    model: LoadedModel, req: oip.InferRequest, results: dict[str, np.ndarray]
) -> list[tuple[str, np.ndarray, bool]]:
    if req.outputs is None:
        return [(n, results[n], req.binary_output) for n in model.output_names]
    labels = model.manifest.labels
    return [
        (
            o.name,
            oip.classify(results[o.name], o.class_count, labels) if o.class_count else results[o.name],
            o.binary or req.binary_output,
        )
        for o in req.outputs
    ]
