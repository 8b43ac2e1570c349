"""What an ML model is stored with, checked once: :class:`ModelSpec`.

``Client.set_model`` / ``set_model_from_file`` / ``set_model_multigpu``, an
entity's ``add_ml_model`` (:func:`simctl.store.preload.ml_model`), the stored
model header (:func:`simctl.store.format.model_header`) and the colocated
store's preload manifest all carry one ``ModelSpec``; it is checked where it
is made, so every way in gives the same error for the same mistake. A script
or function has only the device part, a :class:`Placement`.

Errors are ConfigErrors naming the argument; :meth:`ModelSpec.checked` puts
the caller's words first (``set_model('cnn'): batch_size must be ...``).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import attrs

from ..core import checks
from ..core.backend import parse_device
from ..core.errors import ConfigError

#: what a backend's name may look like (the worker, which has the backends, says whether it knows it)
BACKEND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
#: the thread counts a model may ask for: accepted and kept (the runtimes' own defaults apply)
THREAD_FIELDS = ("threads_per_queue", "inter_op_threads", "intra_op_threads")

_S = TypeVar("_S", bound="Placement")


def names(arg: str, value: Any) -> tuple[str, ...] | None:
    """None, or the names in ``value`` (a name or a list of them) as a tuple;
    ConfigError naming ``arg`` otherwise."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(n, str) and n for n in items):
        raise ConfigError(f"{arg} must be None, a name or a list of names (non-empty str), got {value!r:.80}")
    return tuple(items)


def _inputs(value: Any) -> tuple[str, ...] | None:
    return names("inputs", value)


def _outputs(value: Any) -> tuple[str, ...] | None:
    return names("outputs", value)


@attrs.frozen(kw_only=True)
class Placement:
    """Where a model or script runs: ``device`` (``"CPU"``, ``"GPU"``, ``"GPU:n"``)
    and, for ``"GPU"``, on how many GPUs of a node (``devices_per_node``, one
    copy each) from ``first_device``. Both are ignored for ``"CPU"``."""

    device: str = "CPU"
    devices_per_node: int = 1
    first_device: int = 0

    def __attrs_post_init__(self) -> None:
        kind, index = parse_device(self.device, "device")
        checks.positive_int("devices_per_node", self.devices_per_node)
        checks.positive_int("first_device", self.first_device, minimum=0)
        if kind == "GPU" and index is not None:
            n = self.devices_per_node
            if n > 1:
                raise ConfigError(f"device {self.device!r} names one GPU, but devices_per_node is {n}; for {n} GPUs "
                                  f"give device='GPU' with devices_per_node={n} and first_device={index}")
            if self.first_device not in (0, index):
                raise ConfigError(f"device {self.device!r} and first_device={self.first_device} name different "
                                  f"GPUs; give device='GPU' with first_device={self.first_device}, or "
                                  f"device={self.device!r} alone")

    @classmethod
    def checked(cls: type[_S], what: str, **fields: Any) -> _S:
        """``cls(**fields)``, its ConfigError prefixed with ``what`` (the call: ``set_model('cnn')``)."""
        try:
            return cls(**fields)
        except ConfigError as exc:
            raise ConfigError(f"{what}: {exc}") from None

    def placements(self, name: str) -> list[tuple[str, str]]:
        """(key, device) of each copy stored under ``name``: one, or one per
        GPU, ``<name>.GPU:<i>`` for i from ``first_device``."""
        kind, index = parse_device(self.device)
        if kind == "CPU" or index is not None:
            return [(name, self.device)]
        if self.devices_per_node == 1:
            return [(name, f"GPU:{self.first_device}" if self.first_device else self.device)]
        gpus = range(self.first_device, self.first_device + self.devices_per_node)
        return [(f"{name}.GPU:{i}", f"GPU:{i}") for i in gpus]

    def on(self: _S, device: str) -> _S:
        """This spec for one copy, on ``device`` (one of :meth:`placements`)."""
        return attrs.evolve(self, device=device, devices_per_node=1, first_device=0)


def _count(arg: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{arg} must be an int >= 0 (0: none), got {checks.show(value)}")


@attrs.frozen(kw_only=True)
class ModelSpec(Placement):
    """An ML model's settings, checked when made. ``backend`` is a backend
    plugin's name (``"ONNX"``, ``"TORCH"``...: only its form is checked here;
    the inference worker, which has the backends, refuses one it does not
    know). ``batch_size``, ``min_batch_size`` and ``min_batch_timeout`` (ms)
    are ints >= 0, 0 meaning "no batching", "no minimum" and "no wait";
    ``tag`` a str; ``inputs`` and ``outputs`` None or names. The thread
    counts are None or positive ints, kept with the model."""

    backend: str
    batch_size: int = 0
    min_batch_size: int = 0
    min_batch_timeout: int = 0
    tag: str = ""
    inputs: tuple[str, ...] | None = attrs.field(default=None, converter=_inputs)
    outputs: tuple[str, ...] | None = attrs.field(default=None, converter=_outputs)
    threads_per_queue: int | None = None
    inter_op_threads: int | None = None
    intra_op_threads: int | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not isinstance(self.backend, str) or not BACKEND_NAME.fullmatch(self.backend):
            raise ConfigError(f"backend must be a backend's name (letters, digits, '_', '.', '+', '-'; such as "
                              f"'ONNX' or 'TORCH'), got {checks.show(self.backend)}")
        for arg in ("batch_size", "min_batch_size", "min_batch_timeout"):
            _count(arg, getattr(self, arg))
        for arg in ("min_batch_size", "min_batch_timeout"):
            if getattr(self, arg) and not self.batch_size:
                raise ConfigError(f"{arg}={getattr(self, arg)} without batch_size: it applies only to a batched "
                                  "model; give batch_size too (the most rows run at once; the model must treat "
                                  f"rows independently), or leave {arg} at 0")
        if self.batch_size and self.min_batch_size > self.batch_size:
            raise ConfigError(f"min_batch_size ({self.min_batch_size}) is larger than batch_size "
                              f"({self.batch_size}); a batch never holds more than batch_size requests")
        if not isinstance(self.tag, str):
            raise ConfigError(f"tag must be a str, got {checks.show(self.tag)}")
        for arg in THREAD_FIELDS:
            checks.positive_int(arg, getattr(self, arg), allow_none=True)

    def header_fields(self) -> dict[str, Any]:
        """The fields of its stored header (see :mod:`simctl.store.format`):
        the eight always, a thread count only when set."""
        fields = {"backend": self.backend, "device": self.device, "batch_size": self.batch_size,
                  "min_batch_size": self.min_batch_size, "min_batch_timeout": self.min_batch_timeout,
                  "tag": self.tag, "inputs": None if self.inputs is None else list(self.inputs),
                  "outputs": None if self.outputs is None else list(self.outputs)}
        fields.update({arg: getattr(self, arg) for arg in THREAD_FIELDS if getattr(self, arg) is not None})
        return fields
