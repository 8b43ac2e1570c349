"""The ML backend protocol: how a serialized model is loaded and run.

Backends are plugins (``simctl_register_backends``). The inference workers
beside the feature store use them; the core never names one.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Sequence
from types import ModuleType
from typing import Any, ClassVar

from .distribution import pip_install
from .errors import ConfigError

#: the device strings every backend accepts, for error messages
DEVICE_FORMS = "'CPU', 'GPU' (the first GPU) or 'GPU:n' (GPU number n, 0 or more)"


def parse_device(device: object, arg_name: str = "device") -> tuple[str, int | None]:
    """``"CPU"`` -> ``("CPU", None)``, ``"GPU"`` -> ``("GPU", None)``,
    ``"GPU:1"`` -> ``("GPU", 1)``; anything else is a ConfigError naming
    ``arg_name`` and listing the valid forms."""
    match = re.fullmatch(r"(CPU|GPU)(?::([0-9]+))?", device) if isinstance(device, str) else None
    if match is None or (match[1] == "CPU" and match[2] is not None):
        raise ConfigError(f"{arg_name} must be {DEVICE_FORMS}; got {device!r:.80}")
    return match[1], None if match[2] is None else int(match[2])


class Backend:
    """Base class of ML backends. Subclasses set ``name`` and ``requires``
    and implement :meth:`load` and :meth:`run`.

    Heavy libraries are imported inside :meth:`load`, never at module import,
    so listing plugins stays instant.
    """

    #: what users write as ``add_ml_model(backend=...)``: ``"ONNX"``, ``"TORCH"``...
    name: ClassVar[str]
    #: importable modules the backend needs, checked without importing them
    requires: ClassVar[tuple[str, ...]] = ()
    #: the pip requirement that provides them, for the "install ..." hint (``"simctl-hpc[onnx]"``;
    #: the hint quotes it: ``pip install 'simctl-hpc[onnx]'``)
    install_hint: ClassVar[str] = ""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when usable here, else why not
        (``"onnxruntime is not installed: pip install 'simctl-hpc[onnx]'"``)."""
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"{', '.join(missing)} is not installed: {pip_install(cls.install_hint or ' '.join(missing))}"
        return None

    @classmethod
    def runtime(cls, module: str) -> ModuleType:
        """Import the runtime ``module`` (one of :attr:`requires`), or raise
        ConfigError saying which extra installs it."""
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"backend {cls.name!r} cannot be used here: {module} does not import ({exc}); "
                              f"{pip_install(cls.install_hint or module)}") from None

    def load(self, model: bytes, device: str = "CPU", inputs: Sequence[str] | None = None,
             outputs: Sequence[str] | None = None) -> Any:
        """Deserialize ``model`` for ``device`` and return a handle for :meth:`run`."""
        raise NotImplementedError

    def run(self, handle: Any, inputs: Sequence[Any]) -> list[Any]:
        """Run the loaded model on numpy arrays; return numpy arrays."""
        raise NotImplementedError

    def load_script(self, script: str | bytes, device: str = "CPU") -> Any:
        """Compile a script (source text holding functions) for ``device`` and
        return a handle for :meth:`run_script`. Only some backends have scripts."""
        raise ConfigError(f"backend {self.name!r} runs no scripts or functions; TORCH does")

    def run_script(self, handle: Any, fn_name: str, inputs: Sequence[Any]) -> list[Any]:
        """Run function ``fn_name`` of a loaded script on numpy arrays; return numpy arrays."""
        raise ConfigError(f"backend {self.name!r} runs no scripts or functions; TORCH does")
