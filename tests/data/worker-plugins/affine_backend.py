"""Test fixture: an ML backend that is NOT installed (no entry point): tests
register it in-process and pass it to an experiment, whose store's inference
workers must load it from this module.

A model is JSON bytes ``{"scale": a, "shift": b}``; running it on x gives
``a * x + b``. Imports only the face (``simctl``), like a third party's plugin.
"""

import json
from collections.abc import Sequence
from typing import Any

import simctl
from simctl import ConfigError


class AffineBackend(simctl.Backend):
    """``backend="AFFINE"``: y = scale * x + shift, on the CPU."""

    name = "AFFINE"
    requires = ("numpy",)

    def load(self, model: bytes, device: str = "CPU", inputs: Sequence[str] | None = None,
             outputs: Sequence[str] | None = None) -> dict[str, float]:
        kind, _ = simctl.parse_device(device)
        if kind != "CPU":
            raise ConfigError(f"backend 'AFFINE' runs on the CPU only; got device {device!r}")
        try:
            params = json.loads(bytes(model))
            return {"scale": float(params["scale"]), "shift": float(params["shift"])}
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"an AFFINE model is JSON {{'scale': a, 'shift': b}}; got {bytes(model)[:40]!r} "
                              f"({exc})") from None

    def run(self, handle: dict[str, float], inputs: Sequence[Any]) -> list[Any]:
        np = self.runtime("numpy")
        return [np.asarray(inputs[0]) * np.float32(handle["scale"]) + np.float32(handle["shift"])]


def model(scale: float, shift: float) -> bytes:
    """The bytes of an AFFINE model."""
    return json.dumps({"scale": scale, "shift": shift}).encode()


@simctl.hookimpl
def simctl_register_backends() -> list[type[simctl.Backend]]:
    """Registering this module provides AFFINE."""
    return [AffineBackend]


class Plugin:
    """Registering ``Plugin()`` provides AFFINE too (a worker makes its own with ``Plugin()``)."""

    @simctl.hookimpl
    def simctl_register_backends(self) -> list[type[simctl.Backend]]:
        return [AffineBackend]
