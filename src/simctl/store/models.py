"""The client's ML model and script commands: stored, read and deleted here
(running them is :mod:`.inference`). A model is stored with a checked
:class:`~simctl.store.spec.ModelSpec` in one SET (the layout is in
:mod:`.format`); every change is published to the inference workers, which
drop what they had loaded under that key."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..core.errors import ConfigError
from . import format as fmt, keyspace, protocol as pr
from .base import ClientBase, gpus, poll
from .format import FormatError
from .spec import ModelSpec, Placement
from .wire import Parts

#: a model up to this size is joined to its header; a larger one is sent as two parts, without a copy
JOIN_BELOW = 65536


def _model_bytes(model: Any, what: str) -> memoryview:
    """``model`` (a serialized model: bytes, or another contiguous buffer) as a byte view."""
    if not isinstance(model, (bytes, bytearray, memoryview)):
        raise ConfigError(f"{what}: model must be bytes (a serialized model), got {type(model).__name__}; "
                          f"use set_model_from_file for a file, simctl.ml.* serialize_model for an object")
    view = memoryview(model)
    if not view.contiguous:
        raise ConfigError(f"{what}: model must be a contiguous buffer")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class ModelCommands(ClientBase):
    """ML models, scripts and functions in the store (stored, not run)."""

    # -- models ---------------------------------------------------------------------------

    def set_model(self, name: str, model: bytes | bytearray | memoryview, backend: str, device: str = "CPU",
                  batch_size: int = 0, min_batch_size: int = 0, min_batch_timeout: int = 0, tag: str = "",
                  inputs: str | list[str] | None = None, outputs: str | list[str] | None = None) -> None:
        """Store the serialized model ``model`` (bytes) under ``name`` for the
        ``backend`` plugin (``"ONNX"``, ``"TORCH"``...), replacing any model of
        that name; one SET. Every argument is checked before anything is sent;
        the backend by its form only: the inference worker that runs the model
        says whether it has that backend."""
        what = f"set_model({name!r})"
        key = self._key("model", name, False, "set_model")
        view = _model_bytes(model, what)
        spec = ModelSpec.checked(what, backend=backend, device=device, batch_size=batch_size,
                                 min_batch_size=min_batch_size, min_batch_timeout=min_batch_timeout, tag=tag,
                                 inputs=inputs, outputs=outputs)
        self._store_model(key, view, view.nbytes, spec, what)

    def set_model_from_file(self, name: str, model_file: str | os.PathLike[str], backend: str,
                            device: str = "CPU", batch_size: int = 0, min_batch_size: int = 0,
                            min_batch_timeout: int = 0, tag: str = "", inputs: str | list[str] | None = None,
                            outputs: str | list[str] | None = None) -> None:
        """Like :meth:`set_model` with the model read from the file ``model_file``."""
        what = f"set_model_from_file({name!r})"
        key = self._key("model", name, False, "set_model_from_file")
        if not isinstance(model_file, (str, os.PathLike)):
            raise ConfigError(f"{what}: model_file must be a path, got {type(model_file).__name__}")
        if not os.path.isfile(model_file):
            raise ConfigError(f"{what}: model_file {os.fspath(model_file)!r} is not a file"
                              f"{'' if os.path.exists(model_file) else ' (it does not exist)'}")
        size = os.path.getsize(model_file)
        spec = ModelSpec.checked(what, backend=backend, device=device, batch_size=batch_size,
                                 min_batch_size=min_batch_size, min_batch_timeout=min_batch_timeout, tag=tag,
                                 inputs=inputs, outputs=outputs)
        self._store_model(key, None, size, spec, what, path=os.fspath(model_file))

    def set_model_spec(self, name: str, model: bytes | bytearray | memoryview, spec: ModelSpec) -> None:
        """Store ``model`` under ``name`` with the settings ``spec``: once, or,
        for ``device="GPU"`` on ``devices_per_node`` > 1 GPUs, once per GPU as
        ``<name>.GPU:<i>`` (see :meth:`ModelSpec.placements`)."""
        what = f"set_model({name!r})"
        if not isinstance(spec, ModelSpec):
            raise ConfigError(f"{what}: spec must be a ModelSpec, got {type(spec).__name__}")
        view = _model_bytes(model, what)
        for copy, device in spec.placements(name):
            self._store_model(self._key("model", copy, False, "set_model"), view, view.nbytes, spec.on(device),
                              f"set_model({copy!r})")

    def _store_model(self, key: str, model: memoryview | None, size: int, spec: ModelSpec, what: str,
                     path: str | None = None) -> None:
        """SET the model (read from ``path`` if no ``model``) with its header."""
        if not size:
            raise ConfigError(f"{what}: the model is empty (0 bytes)" + (f": {path!r}" if path else ""))
        header = fmt.model_header(spec, size, what)
        if model is None:
            try:
                with open(path, "rb") as fh:  # type: ignore[arg-type]
                    data = fh.read()
            except OSError as exc:
                raise ConfigError(f"{what}: cannot read model_file {path!r}: {exc}") from None
            if len(data) != size:
                raise ConfigError(f"{what}: model_file {path!r} changed size while it was read")
            model = memoryview(data)
        value = header + bytes(model) if size <= JOIN_BELOW else Parts([header, model])
        self._put_value(what, key, value, "model")
        self._changed(what, key)

    def _changed(self, what: str, key: str) -> None:
        """Tell the inference workers that the model or script ``key`` changed:
        on every server (a cluster's shard passes a message on to the others
        only later, and a request sent next must find its worker told)."""
        message = pr.change(key)
        for r in self._server.primaries().values():
            self._call(what, r.publish, pr.CHANGED, message)

    def _get_stored(self, op: str, kind: str, name: str, decode: Callable[[bytes], tuple[Any, Any]]) -> Any:
        """The payload of the model or script ``name`` (read prefix), decoded."""
        key = self._key("model", name, True, op, look=True)
        value = self._key_cmd(op, key, "GET", key, kind=kind)
        if value is None:
            raise self._missing(op, kind, key, name)
        if fmt.kind_of_value(value) != kind:
            raise keyspace.refused(op, key, fmt.kind_of_value(value), kind, write=False)
        try:
            return decode(value)[1]
        except FormatError as exc:
            raise FormatError(f"{op} {key!r}: {exc}") from None

    def _delete_stored(self, op: str, kind: str, name: str) -> None:
        key = self._key("model", name, True, op)
        if self._guarded(op, keyspace.DELETE, [key], [kind], kind):
            self._changed(op, key)

    def get_model(self, name: str) -> bytes:
        """The serialized model stored under ``name`` (its metadata: :func:`format.parse_model_header`)."""
        return self._get_stored("get_model", "model", name, fmt.decode_model)  # type: ignore[no-any-return]

    def delete_model(self, name: str) -> None:
        """Delete the model ``name`` (nothing happens if there is none)."""
        self._delete_stored("delete_model", "model", name)

    def model_exists(self, name: str) -> bool:
        """Whether a model is stored under ``name`` (a tensor or script there is not one)."""
        key = self._key("model", name, True, "model_exists", look=True)
        return self._kind_of(key) == "model"

    def poll_model(self, name: str, poll_frequency_ms: float, num_tries: int) -> bool:
        """Like :meth:`poll_key` for the model ``name``."""
        return poll(lambda: self.model_exists(name), poll_frequency_ms, num_tries, "poll_model")

    # -- scripts and functions ----------------------------------------------------------------

    def set_script(self, name: str, script: str, device: str = "CPU") -> None:
        """Store ``script`` (TorchScript source text holding functions) under ``name``; one SET."""
        what = f"set_script({name!r})"
        key = self._key("model", name, False, "set_script")
        self._store_script(key, script, device, what, "script")

    def set_script_from_file(self, name: str, script_file: str | os.PathLike[str], device: str = "CPU") -> None:
        """Like :meth:`set_script` with the source read from ``script_file`` (UTF-8)."""
        what = f"set_script_from_file({name!r})"
        key = self._key("model", name, False, "set_script_from_file")
        if not isinstance(script_file, (str, os.PathLike)):
            raise ConfigError(f"{what}: script_file must be a path, got {type(script_file).__name__}")
        Placement.checked(what, device=device)  # before reading the file
        try:
            with open(script_file, encoding="utf-8") as fh:
                source = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{what}: cannot read script_file {os.fspath(script_file)!r}: {exc}") from None
        self._store_script(key, source, device, what, "script_file")

    def set_function(self, name: str, function: Callable[..., Any] | str, device: str = "CPU") -> None:
        """Store a TorchScript function under ``name``: a Python function (its
        TorchScript source, made with :func:`simctl.ml.torch.serialize_function`;
        needs torch) or that source as a str."""
        what = f"set_function({name!r})"
        key = self._key("model", name, False, "set_function")
        Placement.checked(what, device=device)
        if not isinstance(function, str):
            if not callable(function):
                raise ConfigError(f"{what}: function must be a Python function or its TorchScript source (str), "
                                  f"got {type(function).__name__}")
            from ..ml.torch import serialize_function  # torch: start-up cost, only when a function is given

            function = serialize_function(function)
        self._store_script(key, function, device, what, "function")

    def _store_script(self, key: str, source: Any, device: Any, what: str, arg: str) -> None:
        Placement.checked(what, device=device)
        if not isinstance(source, str) or not source.strip():
            got = f"{type(source).__name__}" if not isinstance(source, str) else "an empty str"
            raise ConfigError(f"{what}: {arg} must be non-empty TorchScript source text (str), got {got}")
        try:
            data = source.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(f"{what}: {arg} is not valid Unicode text ({exc})") from None
        self._put_value(what, key, fmt.script_header(device, len(data), what) + data, "script")
        self._changed(what, key)

    def get_script(self, name: str) -> str:
        """The source of the script (or function) stored under ``name``."""
        return self._get_stored("get_script", "script", name, fmt.decode_script)  # type: ignore[no-any-return]

    def delete_script(self, name: str) -> None:
        """Delete the script ``name`` (nothing happens if there is none)."""
        self._delete_stored("delete_script", "script", name)

    # -- several GPUs: one copy per GPU, named <name>.GPU:<n> ----------------------------------

    def set_model_multigpu(self, name: str, model: bytes | bytearray | memoryview, backend: str, first_gpu: int,
                           num_gpus: int, batch_size: int = 0, min_batch_size: int = 0, min_batch_timeout: int = 0,
                           tag: str = "", inputs: str | list[str] | None = None,
                           outputs: str | list[str] | None = None) -> None:
        """Store ``model`` once per GPU ``first_gpu`` .. ``first_gpu + num_gpus - 1``,
        as ``<name>.GPU:<n>`` for device ``GPU:<n>`` (see :meth:`run_model_multigpu`)."""
        what = f"set_model_multigpu({name!r})"
        numbers = gpus("set_model_multigpu", first_gpu, num_gpus)
        view = _model_bytes(model, what)
        spec = ModelSpec.checked(what, backend=backend, device="GPU", devices_per_node=num_gpus,
                                 first_device=first_gpu, batch_size=batch_size, min_batch_size=min_batch_size,
                                 min_batch_timeout=min_batch_timeout, tag=tag, inputs=inputs, outputs=outputs)
        for gpu in numbers:
            copy = f"{name}.GPU:{gpu}"
            self._store_model(self._key("model", copy, False, "set_model"), view, view.nbytes, spec.on(f"GPU:{gpu}"),
                              f"set_model({copy!r})")

    def set_script_multigpu(self, name: str, script: str, first_gpu: int, num_gpus: int) -> None:
        """Store ``script`` once per GPU, as ``<name>.GPU:<n>``."""
        for gpu in gpus("set_script_multigpu", first_gpu, num_gpus):
            self.set_script(f"{name}.GPU:{gpu}", script, f"GPU:{gpu}")

    def set_function_multigpu(self, name: str, function: Callable[..., Any] | str, first_gpu: int,
                              num_gpus: int) -> None:
        """Store ``function`` once per GPU, as ``<name>.GPU:<n>``."""
        for gpu in gpus("set_function_multigpu", first_gpu, num_gpus):
            self.set_function(f"{name}.GPU:{gpu}", function, f"GPU:{gpu}")

    def delete_model_multigpu(self, name: str, first_gpu: int, num_gpus: int) -> None:
        """Delete every copy stored by :meth:`set_model_multigpu`."""
        for gpu in gpus("delete_model_multigpu", first_gpu, num_gpus):
            self.delete_model(f"{name}.GPU:{gpu}")

    def delete_script_multigpu(self, name: str, first_gpu: int, num_gpus: int) -> None:
        """Delete every copy stored by :meth:`set_script_multigpu`."""
        for gpu in gpus("delete_script_multigpu", first_gpu, num_gpus):
            self.delete_script(f"{name}.GPU:{gpu}")
