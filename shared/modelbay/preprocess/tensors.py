"""Instances that already are tensors: raw models, tabular rows, raw strings."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadRequest
from ..manifest import StringPreprocessing, TabularPreprocessing, TensorSpec
from ..protocols.dtypes import numpy_dtype
from . import instance_error


def as_array(values: Any, dtype: np.dtype, what: str) -> np.ndarray:
    """A dense array of ``dtype``, or a 400 saying why not (ragged, wrong kind of value)."""
    if dtype == np.dtype(object):
        arr = np.array(values, dtype=object)
        if any(not isinstance(v, str) for v in arr.reshape(-1)):
            raise BadRequest(f"{what}: expected strings")
        return arr
    try:
        arr = np.asarray(values)
    except ValueError:
        raise BadRequest(f"{what}: instances must all have the same shape (ragged nested lists)") from None
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise BadRequest(f"{what}: expected numbers of the same shape, got {arr.dtype.name!s} values")
    if (
        dtype.kind in "iu"
        and arr.dtype.kind == "f"
        and (not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)))
    ):
        raise BadRequest(f"{what}: expected integers")
    if dtype.kind == "b" and arr.dtype.kind != "b":
        raise BadRequest(f"{what}: expected true/false values")
    try:
        return arr.astype(dtype, casting="unsafe", copy=False)
    except (ValueError, OverflowError) as e:
        raise BadRequest(f"{what}: {e}") from None


class RawPreprocessor:
    """No preprocessing: an instance is one row of the single input, or {input: row} for several."""

    def __init__(self, inputs: list[TensorSpec]) -> None:
        self.inputs = inputs

    def __call__(self, instances: list[Any]) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1 and not (isinstance(instances[0], dict) and self.inputs[0].name in instances[0]):
            spec = self.inputs[0]
            return {spec.name: as_array(instances, numpy_dtype(spec.dtype), f"input {spec.name!r}")}
        names = [s.name for s in self.inputs]
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise instance_error(i, f"the model has inputs {names}: send an object with one value per input")
            missing = [n for n in names if n not in inst]
            if missing:
                raise instance_error(i, f"missing {missing}")
        return {
            s.name: as_array([inst[s.name] for inst in instances], numpy_dtype(s.dtype), f"input {s.name!r}")
            for s in self.inputs
        }


class TabularPreprocessor:
    """Rows as lists of numbers, or objects keyed by the manifest's ``columns``."""

    def __init__(self, pre: TabularPreprocessing, spec: TensorSpec) -> None:
        self.pre = pre
        self.spec = spec
        self.dtype = numpy_dtype(spec.dtype)

    def __call__(self, instances: list[Any]) -> dict[str, np.ndarray]:
        cols = self.pre.columns
        rows = []
        for i, inst in enumerate(instances):
            if isinstance(inst, dict):
                if not cols:
                    raise instance_error(i, "this model takes rows as lists (no column names are declared)")
                missing = [c for c in cols if c not in inst]
                if missing:
                    raise instance_error(i, f"missing columns {missing}")
                unknown = sorted(set(inst) - set(cols))
                if unknown:
                    raise instance_error(i, f"unknown columns {unknown}; the columns are {cols}")
                rows.append([inst[c] for c in cols])
            elif isinstance(inst, list):
                if cols and len(inst) != len(cols):
                    raise instance_error(i, f"{len(inst)} values for {len(cols)} columns {cols}")
                rows.append(inst)
            else:
                raise instance_error(i, "a row is a list of numbers or an object keyed by column")
        arr = as_array(rows, self.dtype, "rows")
        if arr.ndim != 2:
            raise BadRequest(f"rows must be flat lists of numbers (got {arr.ndim - 1}-D rows)")
        return {self.spec.name: arr}


class StringPreprocessor:
    """Models that take strings themselves: [N] or [N, 1] string tensors."""

    def __init__(self, pre: StringPreprocessing, spec: TensorSpec) -> None:
        self.pre = pre
        self.spec = spec

    def __call__(self, instances: list[Any]) -> dict[str, np.ndarray]:
        for i, inst in enumerate(instances):
            if not isinstance(inst, str):
                raise instance_error(i, "expected a string")
        arr = np.array(instances, dtype=object).reshape([len(instances), *self.pre.instance_shape])
        if self.spec.dtype != "string":
            raise BadRequest(f"input {self.spec.name!r} takes {self.spec.dtype}, not strings")
        return {self.spec.name: arr}
