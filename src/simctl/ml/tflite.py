"""Convert Keras models and TensorFlow functions for the ``TFLITE`` backend.

    from simctl.ml.tflite import serialize_model
    client.set_model("cnn", serialize_model(keras_model), "TFLITE")

The model is frozen (as for ``TF``) and converted by ``tf.lite.TFLiteConverter``
into a flatbuffer. A Keras model's batch dimension stays dynamic, so any batch
size runs. Its inputs are named ``input_0``, ``input_1``... in the order the
model takes them, which is the order the ``TFLITE`` backend feeds them in.
Converting needs tensorflow (``pip install 'simctl-hpc[tf]'``); running needs only
the LiteRT interpreter (``pip install 'simctl-hpc[tflite]'``).
"""

from __future__ import annotations

from typing import Any

from simctl.core.errors import ConfigError
from simctl.ml.tf import frozen_function, import_tensorflow


def serialize_model(model: Any) -> bytes:
    """``model`` (a Keras model built on ``keras.Input``, a tf.function with
    an input_signature, or a concrete function) as TFLite flatbuffer bytes
    for ``backend="TFLITE"``."""
    tf = import_tensorflow()
    frozen = frozen_function(model, positional_names=True)
    try:
        # a frozen function holds no variables: an empty tf.Module is its trackable
        # (converting the unfrozen function with the Keras model as trackable gives wrong weights)
        return bytes(tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module()).convert())
    except Exception as exc:
        raise ConfigError(f"tf.lite.TFLiteConverter cannot convert {type(model).__name__}: "
                          f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}") from None
