"""Helpers for ML models in the feature store: serializing a user's in-memory
model for a backend (``simctl.ml.tf``, ``simctl.ml.tflite``, ``simctl.ml.torch``),
and reading one made with the
runtime's own tools from bytes or a file (:func:`read_model`)."""

from __future__ import annotations

import os

from simctl.core.errors import ConfigError


def read_model(model: bytes | None = None, model_path: str | os.PathLike[str] | None = None) -> bytes:
    """The serialized model given either in memory (``model``) or as a file
    (``model_path``: what ``torch.jit.save`` or ``torch.onnx.export`` wrote).
    ConfigError when both, neither, or a path that cannot be read."""
    if (model is None) == (model_path is None):
        raise ConfigError("give the model either in memory (model=bytes) or as a file (model_path=...), "
                          f"not {'both' if model is not None else 'neither'}")
    if model is not None:
        if not isinstance(model, (bytes, bytearray, memoryview)):
            raise ConfigError("model must be bytes (a serialized model; see serialize_model in simctl.ml.tf, "
                              f".tflite or .torch); got {type(model).__name__}")
        return bytes(model)
    if not isinstance(model_path, (str, os.PathLike)) or not os.fspath(model_path):
        raise ConfigError(f"model_path must be a file path; got {model_path!r:.80}")
    try:
        with open(model_path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"model_path {os.fspath(model_path)!r} cannot be read: {exc.strerror}") from None
