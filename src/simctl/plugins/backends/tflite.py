"""The ``TFLITE`` backend: TFLite flatbuffers run by the LiteRT interpreter
(``pip install 'simctl-hpc[tflite]'``), on the CPU.

A model is what ``tf.lite.TFLiteConverter`` writes (or
:func:`simctl.ml.tflite.serialize_model`). Its inputs and outputs are those of
its first signature, in the natural order of their names (``input_2`` before
``input_10``), or for a model without signatures those of its main graph;
``inputs`` and ``outputs`` pick and order them by name. Inputs whose batch
(first) dimension differs from the model's current one are resized to it
(free when the model's batch is dynamic, ``-1``; a fixed batch is resized too
when the model's operations allow it). ai_edge_litert is imported when a model
is loaded, never when plugins are listed; the interpreter runs one thread.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

import simctl
from simctl import Backend, ConfigError, parse_device


@dataclass(frozen=True)
class Tensor:
    """An input or output of a loaded model: its tensor index, dtype and shape signature (-1: any size)."""

    index: int
    dtype: np.dtype[Any]
    signature: tuple[int, ...]


class TfliteModel(NamedTuple):
    """A loaded model: its interpreter, the runner of its first signature (None
    without signatures), the tensors fed and fetched by name, in order, and a
    lock (an interpreter runs one call at a time)."""

    interpreter: Any
    runner: Any
    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]
    lock: threading.Lock


def _tensors(details: Any) -> dict[str, Tensor]:
    """``{name: Tensor}`` from the interpreter's details (a list, or a dict
    by signature name sorted in natural order)."""
    items = (sorted(details.items(), key=lambda i: _natural(i[0])) if isinstance(details, dict)
             else [(d["name"], d) for d in details])
    return {n: Tensor(int(d["index"]), np.dtype(d["dtype"]), tuple(int(x) for x in d["shape_signature"]))
            for n, d in items}


def _natural(name: str) -> list[Any]:
    """Sort key putting ``input_2`` before ``input_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _pick(arg_name: str, given: Sequence[str] | str | None, known: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ``known`` tensors named in ``given`` (in its order), or all of them."""
    if given is None:
        return known
    names = [given] if isinstance(given, str) else list(given)
    unknown = [n for n in names if n not in known]
    if unknown or not names or (arg_name == "inputs" and sorted(names) != sorted(known)):
        problem = (f"the TFLITE model has no {'/'.join(map(repr, unknown))}" if unknown
                   else f"name each of the model's {arg_name} once" if names else "name at least one")
        raise ConfigError(f"{arg_name} {names!r}: {problem}; its {arg_name} are {list(known)!r}")
    return {n: known[n] for n in names}


def _shape(signature: Sequence[int]) -> str:
    """``[?, 3, 3, 1]`` from a shape signature ``[-1, 3, 3, 1]``."""
    return "[" + ", ".join("?" if d < 0 else str(d) for d in signature) + "]"


class TfliteBackend(Backend):
    """TFLite flatbuffers on the LiteRT interpreter (``ai_edge_litert``), CPU only."""

    name = "TFLITE"
    requires = ("ai_edge_litert",)
    install_hint = "simctl-hpc[tflite]"

    def load(self, model: bytes, device: str = "CPU", inputs: Sequence[str] | None = None,
             outputs: Sequence[str] | None = None) -> TfliteModel:
        """An interpreter for ``model``. ``inputs`` and ``outputs`` pick (and
        order) the model's named inputs and outputs; None means all of them."""
        kind, _ = parse_device(device)
        if kind != "CPU":
            raise ConfigError(f"device {device!r}: TFLITE runs on the CPU here (the LiteRT interpreter); "
                              "use device='CPU'")
        if not isinstance(model, (bytes, bytearray, memoryview)):
            raise ConfigError(f"TFLITE model must be bytes (a .tflite flatbuffer, as tf.lite.TFLiteConverter "
                              f"makes it); got {type(model).__name__}")
        litert = self.runtime("ai_edge_litert.interpreter")
        try:
            interpreter = litert.Interpreter(model_content=bytes(model))
            interpreter.allocate_tensors()  # an op LiteRT lacks fails here, not at the first run
        except Exception as exc:  # ValueError "not a valid Flatbuffer buffer", RuntimeError...
            raise ConfigError(f"backend 'TFLITE': the {len(model)} bytes given are not a TFLite model "
                              f"(a flatbuffer, as tf.lite.TFLiteConverter makes it) LiteRT can load: "
                              f"{str(exc).strip() or repr(exc)}") from None
        signatures = interpreter.get_signature_list()
        runner = interpreter.get_signature_runner(next(iter(signatures))) if signatures else None
        ins = _tensors(runner.get_input_details() if runner else interpreter.get_input_details())
        outs = _tensors(runner.get_output_details() if runner else interpreter.get_output_details())
        return TfliteModel(interpreter, runner, _pick("inputs", inputs, ins), _pick("outputs", outputs, outs),
                           threading.Lock())

    def run(self, handle: TfliteModel, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Feed ``inputs`` (in the order of the model's inputs), resized to
        their batch size, and return the model's outputs."""
        if len(inputs) != len(handle.inputs):
            raise ConfigError(f"the TFLITE model takes {len(handle.inputs)} input(s) {list(handle.inputs)!r}; "
                              f"got {len(inputs)}")
        arrays = [np.asarray(a) for a in inputs]
        for (name, want), a in zip(handle.inputs.items(), arrays):
            if (a.dtype != want.dtype or a.ndim != len(want.signature)
                    or any(0 <= d != n for d, n in list(zip(want.signature, a.shape))[1:])):
                raise ConfigError(f"TFLITE model input {name!r} takes {want.dtype}{_shape(want.signature)}; "
                                  f"got {a.dtype}{list(a.shape)}")
        interpreter = handle.interpreter
        with handle.lock:
            try:
                if handle.runner is not None:  # resizes (a no-op for the same shape), allocates, runs
                    result = handle.runner(**dict(zip(handle.inputs, arrays)))
                    return [result[name] for name in handle.outputs]
                for want, a in zip(handle.inputs.values(), arrays):
                    interpreter.resize_tensor_input(want.index, a.shape)
                interpreter.allocate_tensors()
                for want, a in zip(handle.inputs.values(), arrays):
                    interpreter.set_tensor(want.index, a)
                interpreter.invoke()
                return [interpreter.get_tensor(t.index) for t in handle.outputs.values()]
            except Exception as exc:  # a fixed batch its operations cannot resize...
                shown = ", ".join(f"{n}: {a.dtype}{list(a.shape)} (the model's {_shape(t.signature)})"
                                  for (n, t), a in zip(handle.inputs.items(), arrays))
                raise ConfigError(f"the TFLITE model failed on inputs ({shown}): {str(exc).strip()}") from None


@simctl.hookimpl
def simctl_register_backends() -> list[type[Backend]]:
    """The ``TFLITE`` backend."""
    return [TfliteBackend]
