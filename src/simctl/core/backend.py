"""The ML backend protocol: how a serialized model is loaded and run.

Backends are plugins (``simctl_register_backends``). The inference workers
beside the feature store use them; the core never names one.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar, Sequence


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
    #: the pip requirement that provides them, for the "install ..." hint
    install_hint: ClassVar[str] = ""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when usable here, else why not (``"install onnxruntime"``)."""
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"install {cls.install_hint or ' '.join(missing)}"
        return None

    def load(self, model: bytes, device: str = "CPU", inputs: Sequence[str] | None = None,
             outputs: Sequence[str] | None = None) -> Any:
        """Deserialize ``model`` for ``device`` and return a handle for :meth:`run`."""
        raise NotImplementedError

    def run(self, handle: Any, inputs: Sequence[Any]) -> list[Any]:
        """Run the loaded model on numpy arrays; return numpy arrays."""
        raise NotImplementedError
