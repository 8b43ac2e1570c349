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

    from simctl.ml import tf as ml_tf, tflite as ml_tflite

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


def torch_twin(keras_model: Any) -> Any:
    """The same network as :func:`keras_cnn`'s, in torch, with its weights:
    takes and gives NHWC like the Keras model (for the TORCH and ONNX backends)."""
    import numpy as np
    import torch

    kernel, bias = (np.asarray(w) for w in keras_model.get_layer("cnn").conv.get_weights())

    class Twin(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3)
            with torch.no_grad():
                self.conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
                self.conv.bias.copy_(torch.from_numpy(bias))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    return Twin().eval()


def onnx_of(module: Any, example: Any) -> bytes:
    """``module`` exported to ONNX (batch dimension dynamic), input ``x``, output ``y``."""
    import io

    import torch

    buf = io.BytesIO()
    torch.onnx.export(module, (example,), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    return buf.getvalue()


def the_cnn_for_every_backend(seed: int = 0) -> tuple[Any, dict[str, tuple[bytes, dict[str, Any]]]]:
    """(keras model, {backend: (model bytes, set_model keyword arguments)}) for
    TF, TFLITE, TORCH and ONNX: the documents' CNN, the same weights in each."""
    import torch

    from simctl.ml.torch import serialize_model

    cnn = keras_cnn(seed)
    twin = torch_twin(cnn.keras_model)
    return cnn.keras_model, {
        "TF": (cnn.tf_bytes, {"inputs": cnn.inputs, "outputs": cnn.outputs}),
        "TFLITE": (cnn.tflite_bytes, {}),
        "TORCH": (serialize_model(twin), {}),
        "ONNX": (onnx_of(twin, torch.zeros(1, 3, 3, 1)), {}),
    }
