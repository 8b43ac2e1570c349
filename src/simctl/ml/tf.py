"""Serialize Keras models and TensorFlow functions for the ``TF`` backend.

    from simctl.ml.tf import serialize_model, freeze_model
    model_bytes, inputs, outputs = serialize_model(keras_model)
    path, inputs, outputs = freeze_model(keras_model, "/tmp/models", "cnn.pb")
    client.set_model("cnn", model_bytes, "TF", inputs=inputs, outputs=outputs)

The model is frozen: its variables become constants of one graph (a
``GraphDef``), fed through its named inputs and read from its named outputs.
The batch dimension stays as the model declares it (``None`` for a Keras
model built on ``keras.Input``: any batch size). tensorflow is imported when
these are called (``pip install 'simctl-hpc[tf]'``).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from simctl.core.distribution import extra
from simctl.core.errors import ConfigError

#: what the helpers take, for error messages
TAKES = ("a Keras model built on keras.Input (keras.Model(inputs=..., outputs=...)), "
         "a tf.function with an input_signature, or a concrete function")


def import_tensorflow() -> Any:
    """``tensorflow``, imported with its C++ log quiet (``TF_CPP_MIN_LOG_LEVEL=2``
    unless already set), or ConfigError naming the extra that installs it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return importlib.import_module("tensorflow")
    except ImportError as exc:
        raise ConfigError(f"tensorflow does not import ({exc}): {extra('tf')}") from None


def frozen_function(model: Any, positional_names: bool = False) -> Any:
    """``model`` (see :data:`TAKES`) as a concrete function whose variables are
    constants. A Keras model's inputs keep their Keras names, or with
    ``positional_names`` are named ``input_0``, ``input_1``... in order."""
    tf = import_tensorflow()
    # imported by name, as tensorflow itself is: tensorflow has no type information
    constants = importlib.import_module("tensorflow.python.framework.convert_to_constants")

    if isinstance(model, tf.types.experimental.ConcreteFunction):
        concrete = model
    elif isinstance(model, tf.types.experimental.PolymorphicFunction):
        if model.input_signature is None:
            raise ConfigError("the tf.function given has no input_signature: decorate it with "
                              "@tf.function(input_signature=[tf.TensorSpec(shape, dtype), ...]) "
                              "or pass fn.get_concrete_function(...)")
        concrete = model.get_concrete_function()
    else:
        keras_inputs = _keras_inputs(model)
        names = [f"input_{i}" if positional_names or not getattr(t, "name", None) else t.name
                 for i, t in enumerate(keras_inputs)]
        specs = [tf.TensorSpec(t.shape, t.dtype, name=n) for t, n in zip(keras_inputs, names)]

        def call(*xs: Any) -> Any:
            return model(list(xs) if len(xs) > 1 else xs[0], training=False)

        try:
            concrete = tf.function(call).get_concrete_function(*specs)
        except Exception as exc:
            raise ConfigError(f"cannot trace {type(model).__name__} on inputs {specs}: "
                              f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    try:
        return constants.convert_variables_to_constants_v2(concrete)
    except Exception as exc:
        raise ConfigError(f"cannot freeze {type(model).__name__} (its variables into constants): "
                          f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None


def _keras_inputs(model: Any) -> list[Any]:
    """The symbolic inputs of a Keras model, or ConfigError saying what to pass."""
    if not any(c.__module__.split(".")[0] in ("keras", "tf_keras") for c in type(model).__mro__):
        raise ConfigError(f"serialize_model takes {TAKES}; got {type(model).__name__}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # a subclassed or Sequential model without keras.Input
        inputs = None
    if not inputs:
        raise ConfigError(f"the Keras model {getattr(model, 'name', '')!r} has no known inputs: build it on "
                          "keras.Input, e.g. x = keras.Input((3, 3, 1)); model = keras.Model(x, net(x))")
    return list(inputs)


def _op_names(tensors: Any) -> list[str]:
    """``['x', 'Identity']`` from tensors named ``x:0``, ``Identity:0``."""
    return [t.name.removesuffix(":0") for t in tensors]


def serialize_model(model: Any) -> tuple[bytes, list[str], list[str]]:
    """``model`` frozen into a TensorFlow graph, for ``backend="TF"``:
    ``(GraphDef bytes, input names, output names)``, the names to pass as
    ``inputs=`` and ``outputs=`` (a Keras model's inputs keep their Keras
    names, e.g. ``['keras_tensor']``; its outputs are ``['Identity', ...]``)."""
    frozen = frozen_function(model)
    graph_def = frozen.graph.as_graph_def()
    return graph_def.SerializeToString(deterministic=True), _op_names(frozen.inputs), _op_names(frozen.outputs)


def freeze_model(model: Any, output_dir: str | os.PathLike[str], file_name: str) -> tuple[str, list[str], list[str]]:
    """:func:`serialize_model` written to ``output_dir/file_name`` (the
    directory is created): ``(path, input names, output names)``, for
    ``add_ml_model(model_path=path, backend="TF", inputs=..., outputs=...)``."""
    if not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir):
        raise ConfigError(f"output_dir must be a directory path; got {output_dir!r:.80}")
    if not isinstance(file_name, str) or not file_name or os.sep in file_name:
        raise ConfigError(f"file_name must be a file name (no directory), e.g. 'model.pb'; got {file_name!r:.80}")
    blob, inputs, outputs = serialize_model(model)
    path = os.path.join(os.fspath(output_dir), file_name)
    try:
        os.makedirs(output_dir, exist_ok=True)
        with open(path, "wb") as f:
            f.write(blob)
    except OSError as exc:
        raise ConfigError(f"freeze_model cannot write {path!r}: {exc.strerror}") from None
    return path, inputs, outputs
