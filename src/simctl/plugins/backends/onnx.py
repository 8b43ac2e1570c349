"""The ``ONNX`` backend: ONNX models run by onnxruntime (``pip install 'simctl-hpc[onnx]'``).

onnxruntime is imported when a model is loaded, never when plugins are listed.
``GPU:n`` needs an onnxruntime build with the CUDA execution provider
(onnxruntime-gpu); the PyPI ``onnxruntime`` runs on the CPU only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

import simctl
from simctl import Backend, ConfigError, parse_device


class OnnxModel(NamedTuple):
    """A loaded model: the session and the names it is fed and asked for."""

    session: Any
    inputs: list[str]
    outputs: list[str]


def _names(arg_name: str, given: Sequence[str] | None, known: list[str]) -> list[str]:
    """``given`` (checked against the model's ``known`` names), or all of them."""
    if given is None:
        return known
    names = [given] if isinstance(given, str) else list(given)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"{arg_name} {names!r}: the ONNX model has no {'/'.join(map(repr, unknown)) or 'names'}; "
                          f"its {arg_name} are {known!r}")
    return names


class OnnxBackend(Backend):
    """ONNX models (``.onnx`` bytes, as ``torch.onnx.export`` writes them) on onnxruntime."""

    name = "ONNX"
    requires = ("onnxruntime",)
    install_hint = "simctl-hpc[onnx]"

    def load(self, model: bytes, device: str = "CPU", inputs: Sequence[str] | None = None,
             outputs: Sequence[str] | None = None) -> OnnxModel:
        """An inference session for ``model`` on ``device``. ``inputs`` and
        ``outputs`` pick (and order) the model's named inputs and outputs;
        None means all of them, in the model's order."""
        kind, index = parse_device(device)
        if not isinstance(model, (bytes, bytearray, memoryview)):
            raise ConfigError(f"ONNX model must be bytes (an .onnx file's content); got {type(model).__name__}")
        ort = self.runtime("onnxruntime")
        if kind == "CPU":
            providers: list[Any] = ["CPUExecutionProvider"]
        elif "CUDAExecutionProvider" in ort.get_available_providers():
            providers = [("CUDAExecutionProvider", {"device_id": index or 0})]
        else:
            raise ConfigError(f"device {device!r}: this onnxruntime runs on {ort.get_available_providers()!r} "
                              "only; a GPU needs onnxruntime-gpu")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: a bad model is reported below, not logged twice
        try:
            session = ort.InferenceSession(bytes(model), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own (InvalidProtobuf, Fail...) for bad bytes
            raise ConfigError(f"backend 'ONNX': the {len(model)} bytes given are not an ONNX model "
                              f"onnxruntime can load: {exc}") from None
        return OnnxModel(session,
                         _names("inputs", inputs, [i.name for i in session.get_inputs()]),
                         _names("outputs", outputs, [o.name for o in session.get_outputs()]))

    def run(self, handle: OnnxModel, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Feed ``inputs`` (in the order of the model's input names) and return its outputs."""
        if len(inputs) != len(handle.inputs):
            raise ConfigError(f"the ONNX model takes {len(handle.inputs)} input(s) {handle.inputs!r}; "
                              f"got {len(inputs)}")
        feed = {name: np.asarray(a) for name, a in zip(handle.inputs, inputs)}
        try:
            return list(handle.session.run(handle.outputs, feed))
        except Exception as exc:  # a wrong shape or dtype: onnxruntime says which
            shown = ", ".join(f"{n}: {a.dtype}{list(a.shape)}" for n, a in feed.items())
            raise ConfigError(f"the ONNX model failed on inputs ({shown}): {exc}") from None


@simctl.hookimpl
def simctl_register_backends() -> list[type[Backend]]:
    """The ``ONNX`` backend."""
    return [OnnxBackend]
