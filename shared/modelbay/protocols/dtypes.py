"""Open Inference Protocol datatypes <-> numpy dtypes, for what onnxruntime's Python API can feed.

BF16 is an OIP datatype and an ONNX type, but numpy has none and onnxruntime's
Python binding takes no bfloat16 arrays, so it is refused with a clear 400.
"""

from __future__ import annotations

import numpy as np

OIP_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
# manifest dtype names (numpy names; "string" for ONNX strings) -> OIP
MANIFEST_TO_OIP: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "string": "BYTES",
    "bfloat16": "BF16",
}


_BY_DTYPE = {dt: name for name, dt in OIP_TO_NUMPY.items() if name != "BYTES"}


def oip_datatype(array: np.ndarray) -> str:
    found = _BY_DTYPE.get(array.dtype)
    if found is not None:
        return found
    if array.dtype.kind in "OUS":
        return "BYTES"
    name = array.dtype.newbyteorder("=").name
    if name not in MANIFEST_TO_OIP:
        raise TypeError(f"no OIP datatype for numpy {name}")
    return MANIFEST_TO_OIP[name]


def numpy_dtype(manifest_dtype: str) -> np.dtype:
    """The numpy dtype onnxruntime wants for a manifest dtype."""
    return np.dtype(object) if manifest_dtype == "string" else np.dtype(manifest_dtype)
