"""Serialize torch modules and functions for the ``TORCH`` backend.

    from simctl.ml.torch import serialize_model, serialize_function
    model_bytes = serialize_model(net)                    # torch.jit.script
    model_bytes = serialize_model(net, example_inputs=x)  # torch.jit.trace
    script = serialize_function(timestwo)                 # TorchScript source text

torch is imported when these are called (``pip install 'simctl-hpc[torch]'``).
"""

from __future__ import annotations

import importlib
import io
import warnings
from collections.abc import Callable
from typing import Any

from simctl.core.distribution import extra
from simctl.core.errors import ConfigError


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise ConfigError(f"simctl.ml.torch needs torch ({exc}): {extra('torch')}") from None


def serialize_model(module: Any, example_inputs: Any = None) -> bytes:
    """``module`` as TorchScript bytes (``torch.jit.save``), for ``backend="TORCH"``.

    A ScriptModule is saved as it is. Otherwise the module is compiled with
    ``torch.jit.script``, or, when ``example_inputs`` is given (a tensor or a
    tuple of tensors), traced with ``torch.jit.trace`` on them. Call
    ``module.eval()`` first for inference (dropout, batch norm)."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"serialize_model takes a torch.nn.Module; got {type(module).__name__}")
    if isinstance(module, torch.jit.ScriptModule):
        scripted = module
    else:
        how = "torch.jit.script" if example_inputs is None else "torch.jit.trace"
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; it is still TORCH's format
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = (torch.jit.script(module) if example_inputs is None
                            else torch.jit.trace(module, example_inputs))
        except Exception as exc:
            hint = " (pass example_inputs= to trace it instead)" if example_inputs is None else ""
            raise ConfigError(f"serialize_model: {how} failed on {type(module).__name__}{hint}: "
                              f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, buf)
    return buf.getvalue()


def serialize_function(fn: Callable[..., Any]) -> str:
    """The TorchScript source text of the Python function ``fn``
    (``torch.jit.script(fn).code``), for ``add_function`` / ``set_function``;
    the ``TORCH`` backend compiles it with the function's own name. ``fn``
    must be defined in a file (TorchScript reads its source)."""
    torch = _torch()
    if not callable(fn) or not hasattr(fn, "__name__"):
        raise ConfigError(f"serialize_function takes a Python function; got {fn!r:.80}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            code: str = torch.jit.script(fn).code
            return code
    except Exception as exc:
        raise ConfigError(f"serialize_function: torch.jit.script failed on {getattr(fn, '__name__', fn)!r}: "
                          f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None
