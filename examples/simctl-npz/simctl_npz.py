"""An ML backend for simctl, on its public API only: ``NPZ``, a dense network (an MLP)
stored as a .npz file of weights and biases, run with numpy matmuls.
``client.set_model("mlp", npz_bytes, "NPZ")``, then ``client.run_model("mlp", "x", "y")``.

A model is what ``numpy.savez(file, w0=..., b0=..., w1=..., b1=...)`` writes: layer i
computes ``x @ w<i> + b<i>`` (w<i> of shape [fan_in, fan_out], b<i> of shape [fan_out]),
with a ReLU between two layers and none after the last."""

import io
from typing import Any, NamedTuple, Sequence

import simctl
from simctl import ConfigError

#: a .npz file is a zip archive of .npy files
ZIP_MAGIC = b"PK\x03\x04"


class Mlp(NamedTuple):
    """A loaded model: the (weights, bias) of its layers, first to last."""

    layers: list[tuple[Any, Any]]


def mlp_layers(arrays: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(w0, b0), (w1, b1)... from a .npz's arrays; ConfigError unless they make a dense network."""
    n = len(arrays) // 2
    if not n or sorted(arrays) != sorted(f"{k}{i}" for i in range(n) for k in "wb"):
        raise ConfigError(f"backend 'NPZ': a model is a .npz of arrays w0, b0, w1, b1...; got {sorted(arrays)!r}")
    layers = [(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(n)]
    fan_in = layers[0][0].shape[0] if layers[0][0].ndim else 0
    for i, (w, b) in enumerate(layers):
        if w.ndim != 2 or w.shape[0] != fan_in or b.shape != w.shape[1:] or w.dtype.kind != "f":
            raise ConfigError(f"backend 'NPZ': layer {i} has w{i} {w.dtype}{list(w.shape)} and b{i} "
                              f"{b.dtype}{list(b.shape)}; accepted: w{i} [{fan_in}, n] and b{i} [n], floats")
        fan_in = w.shape[1]
    return layers


class NpzBackend(simctl.Backend):
    """Dense networks as .npz weights (``numpy.savez``), run by numpy on the CPU."""

    name = "NPZ"
    requires = ("numpy",)  # checked without importing it: `simctl plugins list` stays instant
    install_hint = "numpy"

    def load(self, model: bytes, device: str = "CPU", inputs: Sequence[str] | None = None,
             outputs: Sequence[str] | None = None) -> Mlp:
        """The network in ``model`` (a .npz file's bytes). ConfigError for bytes
        that are not one, a device other than the CPU, or named inputs/outputs."""
        if device != "CPU":
            raise ConfigError(f"device {device!r}: backend 'NPZ' runs on the CPU only; use device='CPU'")
        if inputs or outputs:
            raise ConfigError(f"backend 'NPZ': a model has one unnamed input and one output; "
                              f"got inputs={inputs!r}, outputs={outputs!r}: leave them None")
        data = bytes(model)
        if not data.startswith(ZIP_MAGIC):
            raise ConfigError(f"backend 'NPZ': the {len(data)} bytes given are not a .npz file (numpy.savez "
                              f"writes one, starting with {ZIP_MAGIC!r}); they start with {data[:8]!r}")
        np = self.runtime("numpy")  # the runtime, imported only when a model is loaded
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except Exception as exc:  # a damaged archive (BadZipFile), a member that is not a .npy (ValueError)...
            raise ConfigError(f"backend 'NPZ': the {len(data)} bytes given are not a .npz file numpy can "
                              f"read: {type(exc).__name__}: {exc}") from None
        return Mlp(mlp_layers(arrays))

    def run(self, handle: Mlp, inputs: Sequence[Any]) -> list[Any]:
        """The network's output for ``inputs[0]``: rows [n, fan_in], any n (the
        workers' batches join requests along the first dimension)."""
        np = self.runtime("numpy")
        fan_in = handle.layers[0][0].shape[0]
        if len(inputs) != 1 or np.ndim(inputs[0]) != 2 or np.shape(inputs[0])[1] != fan_in:
            got = ", ".join(f"{np.asarray(a).dtype}{list(np.shape(a))}" for a in inputs)
            raise ConfigError(f"the NPZ model takes one input of shape [n, {fan_in}]; got {len(inputs)}: {got}")
        x = inputs[0]
        for w, b in handle.layers[:-1]:
            x = np.maximum(x @ w + b, 0)  # ReLU between two layers
        w, b = handle.layers[-1]
        return [x @ w + b]


@simctl.hookimpl
def simctl_register_backends() -> list[type[simctl.Backend]]:
    return [NpzBackend]
