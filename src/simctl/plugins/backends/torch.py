"""The ``TORCH`` backend: TorchScript models, scripts and functions run by
torch (``pip install 'simctl-hpc[torch]'``).

A model is what ``torch.jit.save`` writes (or :func:`simctl.ml.torch.serialize_model`);
a script is TorchScript source text with one or more functions
(:func:`simctl.ml.torch.serialize_function` makes it from a Python function).
torch is imported when something is loaded, never when plugins are listed.
"""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

import simctl
from simctl import Backend, ConfigError, parse_device


class TorchLoaded(NamedTuple):
    """A loaded model (a ScriptModule) or script (a CompilationUnit), and its device."""

    obj: Any
    device: Any


def _tensors(torch: Any, arrays: Sequence[np.ndarray], device: Any) -> list[Any]:
    # from_numpy shares memory; it needs a writable array (the store's may be read-only); on the CPU
    # there is nothing to move (each call through torch's dispatcher costs microseconds)
    cpu = device.type == "cpu"
    out = []
    for a in arrays:
        flags = a.flags
        t = torch.from_numpy(a if flags.writeable and flags.c_contiguous else a.copy())  # (np.require: 2 us more)
        out.append(t if cpu else t.to(device))
    return out


def _arrays(torch: Any, result: Any) -> list[np.ndarray]:
    if type(result) is torch.Tensor:  # (the common case: one CPU tensor, not requiring grad under inference_mode)
        try:
            return [result.numpy()]
        except RuntimeError:  # on a GPU, or requiring grad
            pass
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    # (under inference_mode nothing requires grad: a CPU tensor is viewed as it is)
    return [t.numpy() if t.device.type == "cpu" and not t.requires_grad else t.detach().cpu().numpy()
            for t in items]


def _last_line(exc: Exception) -> str:
    """What went wrong, without the TorchScript interpreter's traceback before it."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


class TorchBackend(Backend):
    """TorchScript models (``torch.jit.save`` bytes) and TorchScript scripts and functions."""

    name = "TORCH"
    requires = ("torch",)
    install_hint = "simctl-hpc[torch]"

    def _device(self, torch: Any, device: str) -> Any:
        kind, index = parse_device(device)
        if kind == "CPU":
            return torch.device("cpu")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (index or 0) >= count:
            raise ConfigError(f"device {device!r}: torch sees {count} GPU(s) here"
                              f"{'' if count else ' (a CPU-only torch build, or no GPU)'}")
        return torch.device("cuda", index or 0)

    def load(self, model: bytes, device: str = "CPU", inputs: Sequence[str] | None = None,
             outputs: Sequence[str] | None = None) -> TorchLoaded:
        """The TorchScript module in ``model`` on ``device``. ``inputs`` and
        ``outputs`` are not used: a TorchScript module takes and returns
        tensors by position."""
        parse_device(device)
        if not isinstance(model, (bytes, bytearray, memoryview)):
            raise ConfigError(f"TORCH model must be bytes (what torch.jit.save writes); "
                              f"got {type(model).__name__}")
        torch = self.runtime("torch")
        dev = self._device(torch, device)
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; it is still this backend's format
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(io.BytesIO(bytes(model)), map_location=dev)
        except Exception as exc:  # torch raises RuntimeError for anything not a TorchScript archive
            raise ConfigError(f"backend 'TORCH': the {len(model)} bytes given are not a TorchScript model "
                              f"(torch.jit.save's output) torch.jit.load can read: {str(exc).splitlines()[0]}"
                              ) from None
        module.eval()
        return TorchLoaded(module, dev)

    def run(self, handle: TorchLoaded, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Call the module on ``inputs`` (positional tensors); its tensor or tuple of tensors, as arrays."""
        torch = sys.modules.get("torch") or self.runtime("torch")  # (imported by load: a look-up, per call)
        with torch.inference_mode():
            try:
                return _arrays(torch, handle.obj(*_tensors(torch, inputs, handle.device)))
            except Exception as exc:  # a wrong shape, dtype or count: torch says which
                raise ConfigError(f"the TORCH model failed on {len(inputs)} input(s) "
                                  f"{[f'{a.dtype}{list(a.shape)}' for a in inputs]}: {_last_line(exc)}") from None

    def load_script(self, script: str | bytes, device: str = "CPU") -> TorchLoaded:
        """Compile TorchScript source text (one or more ``def``) for ``device``."""
        parse_device(device)
        if isinstance(script, (bytes, bytearray)):
            script = bytes(script).decode("utf-8", "replace")
        if not isinstance(script, str) or not script.strip():
            raise ConfigError(f"TORCH script must be TorchScript source text (str), e.g. "
                              f"'def negate(x):\\n    return torch.neg(x)\\n'; got {script!r:.80}")
        torch = self.runtime("torch")
        dev = self._device(torch, device)
        try:
            unit = torch.jit.CompilationUnit(script)
        except Exception as exc:
            raise ConfigError(f"backend 'TORCH': the script is not TorchScript it can compile: {exc}") from None
        return TorchLoaded(unit, dev)

    def run_script(self, handle: TorchLoaded, fn_name: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Call function ``fn_name`` of the script on ``inputs``."""
        fn = handle.obj.find_function(fn_name) if isinstance(fn_name, str) else None
        if fn is None:
            known = sorted(f.name for f in handle.obj.get_functions())
            raise ConfigError(f"the script has no function {fn_name!r}; it has {known!r}")
        torch = sys.modules.get("torch") or self.runtime("torch")  # (imported by load: a look-up, per call)
        with torch.inference_mode():
            try:
                return _arrays(torch, fn(*_tensors(torch, inputs, handle.device)))
            except Exception as exc:
                raise ConfigError(f"script function {fn_name!r} failed on {len(inputs)} input(s): "
                                  f"{_last_line(exc)}") from None


@simctl.hookimpl
def simctl_register_backends() -> list[type[Backend]]:
    """The ``TORCH`` backend."""
    return [TorchBackend]
