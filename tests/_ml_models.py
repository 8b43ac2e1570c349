"""The documents' Keras CNN (the Model guide's ``create_tf_cnn``), serialized
for the TF and TFLITE backends, for any test that needs it. Importing this
module is cheap: tensorflow is imported when :func:`keras_cnn` is called."""

from __future__ import annotations

import os
from typing import Any, NamedTuple


class KerasCnn(NamedTuple):
    """The network in memory and as each backend stores it."""

    keras_model: Any
    tf_bytes: bytes
    inputs: list[str]
    outputs: list[str]
    tflite_bytes: bytes


def keras_cnn(seed: int = 0) -> KerasCnn:
    """The guide's ``Net``: a Keras model with one Conv2D (1 filter, 3x3
    kernel) on inputs of shape (3, 3, 1), so a batch (n, 3, 3, 1) gives
    (n, 1, 1, 1); weights drawn from ``seed``. Serialized with
    ``simctl.ml.tf.serialize_model`` (TF) and ``simctl.ml.tflite.serialize_model``
    (TFLITE)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from keras.layers import Conv2D, Input

    from simctl.ml import tf as ml_tf
    from simctl.ml import tflite as ml_tflite

    keras.utils.set_random_seed(seed)

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="cnn")
            self.conv = Conv2D(1, 3, 1)

        def call(self, x: Any) -> Any:
            return self.conv(x)

    # as the guide's create_tf_cnn() builds it
    n = Net()
    input_shape = (3, 3, 1)
    inputs = Input(input_shape)
    outputs = n(inputs)
    model = keras.Model(inputs=inputs, outputs=outputs, name=n.name)

    tf_bytes, input_names, output_names = ml_tf.serialize_model(model)
    return KerasCnn(model, tf_bytes, input_names, output_names, ml_tflite.serialize_model(model))
