"""The ``TF`` backend: frozen TensorFlow graphs run by tensorflow (``pip install 'simctl-hpc[tf]'``).

A model is a frozen graph: a serialized ``GraphDef`` whose variables are
constants, as :func:`simctl.ml.tf.serialize_model` makes it from a Keras
model. It is fed through named inputs and read from named outputs, which
loading requires (``inputs=['x']``, ``outputs=['Identity']``; ``'x:0'`` names
the same tensor). tensorflow is imported when a model is loaded, never when
plugins are listed, with its C++ log quiet (``TF_CPP_MIN_LOG_LEVEL=2`` unless
set). ``GPU:n`` needs a tensorflow build with CUDA; tensorflow-cpu runs on
the CPU only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

import simctl
from simctl import Backend, ConfigError, parse_device

#: ops that hold variables: a graph with them is not frozen
VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})


class TfModel(NamedTuple):
    """A loaded graph: its session, the callable running it, and the tensors fed and fetched."""

    session: Any
    call: Any
    inputs: list[str]
    outputs: list[str]


def _message(exc: BaseException) -> str:
    """A TensorFlow error's own words, without the Python stack it appends."""
    lines = [line for line in str(getattr(exc, "message", exc)).splitlines()
             if line.strip() and not line[0].isspace()
             and not line.startswith(("Graph execution error", "Detected at node"))]
    return " ".join(lines)[:500] or repr(exc)


def _tensor_names(graph: Any, arg_name: str, given: Sequence[str] | str | None, candidates: list[str]) -> list[str]:
    """The graph's tensors named by ``given`` (``'x'`` or ``'x:0'``) as ``'x:0'``;
    ConfigError naming the ``candidates`` when ``given`` is missing or unknown."""
    kind = "placeholders" if arg_name == "inputs" else "unconsumed ops"
    names = [given] if isinstance(given, str) else list(given or [])
    if not names:
        raise ConfigError(f"backend 'TF' needs {arg_name}=[...]: the names of the graph's {arg_name}, as "
                          f"simctl.ml.tf.serialize_model returns them; this graph's {kind} are {candidates!r}")
    tensors, unknown = [], []
    for name in names:
        tensor = name if isinstance(name, str) and ":" in name else f"{name}:0"
        try:
            graph.get_tensor_by_name(tensor)
            tensors.append(tensor)
        except (KeyError, ValueError, TypeError):
            unknown.append(name)
    if unknown:
        raise ConfigError(f"{arg_name} {names!r}: the TF graph has no tensor {'/'.join(map(repr, unknown))}; "
                          f"its {kind} are {candidates!r}")
    return tensors


class TfBackend(Backend):
    """Frozen TensorFlow graphs (``GraphDef`` bytes) with named inputs and outputs."""

    name = "TF"
    requires = ("tensorflow",)
    install_hint = "simctl-hpc[tf]"

    def load(self, model: bytes, device: str = "CPU", inputs: Sequence[str] | None = None,
             outputs: Sequence[str] | None = None) -> TfModel:
        """A session running the frozen graph ``model`` on ``device``, fed
        through the tensors named in ``inputs`` and fetching those in
        ``outputs`` (both required, in the order :meth:`run` uses)."""
        kind, index = parse_device(device)
        if not isinstance(model, (bytes, bytearray, memoryview)):
            raise ConfigError(f"TF model must be bytes (a frozen GraphDef, as simctl.ml.tf.serialize_model "
                              f"makes it); got {type(model).__name__}")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        tf = self.runtime("tensorflow")
        if kind == "GPU":
            count = len(tf.config.list_physical_devices("GPU"))
            if (index or 0) >= count:
                raise ConfigError(f"device {device!r}: TensorFlow sees {count} GPU(s) here"
                                  f"{'' if count else ' (tensorflow-cpu, or no GPU)'}")
        graph_def = tf.compat.v1.GraphDef()
        graph = tf.Graph()
        try:
            graph_def.ParseFromString(bytes(model))
            if not graph_def.node:
                raise ValueError("it holds no operations")
            for node in graph_def.node:  # placed on `device` below, not where it was frozen
                node.device = ""
            with graph.as_default(), graph.device(f"/device:{kind}:{index or 0}"):
                tf.compat.v1.import_graph_def(graph_def, name="")
        except Exception as exc:  # protobuf's DecodeError, import_graph_def's ValueError...
            raise ConfigError(f"backend 'TF': the {len(model)} bytes given are not a TF frozen graph (a GraphDef, "
                              f"as simctl.ml.tf.serialize_model makes it) TensorFlow can import: "
                              f"{_message(exc)}") from None
        variables = [n.name for n in graph_def.node if n.op in VARIABLE_OPS]
        if variables:
            raise ConfigError(f"backend 'TF': the graph is not frozen, it holds variables {variables[:3]!r}; "
                              "freeze it with simctl.ml.tf.serialize_model")
        ops = graph.get_operations()
        placeholders = [op.name for op in ops if op.type == "Placeholder"]
        sinks = [op.name for op in ops if op.outputs and op.type not in ("Const", "Placeholder")
                 and not any(t.consumers() for t in op.outputs)]
        feeds = _tensor_names(graph, "inputs", inputs, placeholders)
        fetches = _tensor_names(graph, "outputs", outputs, sinks)
        config = tf.compat.v1.ConfigProto(allow_soft_placement=True,
                                          gpu_options=tf.compat.v1.GPUOptions(allow_growth=True))
        session = tf.compat.v1.Session(graph=graph, config=config)
        return TfModel(session, session.make_callable(fetches, feeds), feeds, fetches)

    def run(self, handle: TfModel, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Feed ``inputs`` (in the order of the model's input names) and return its outputs."""
        if len(inputs) != len(handle.inputs):
            raise ConfigError(f"the TF model takes {len(handle.inputs)} input(s) {handle.inputs!r}; "
                              f"got {len(inputs)}")
        try:
            return [np.asarray(y) for y in handle.call(*inputs)]
        except Exception as exc:  # a wrong shape or dtype: TensorFlow says which
            shown = ", ".join(f"{n}: {np.asarray(a).dtype}{list(np.shape(a))}" for n, a in zip(handle.inputs, inputs))
            raise ConfigError(f"the TF model failed on inputs ({shown}): {_message(exc)}") from None


@simctl.hookimpl
def simctl_register_backends() -> list[type[Backend]]:
    """The ``TF`` backend."""
    return [TfBackend]
