"""modelbay: versioned ONNX models on object storage, served by stateless functions."""

__version__ = "0.1.0"
