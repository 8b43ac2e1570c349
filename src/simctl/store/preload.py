"""ML models, scripts and functions that a model (or every member of an
ensemble) needs in the feature store before its application starts.

``Model.add_ml_model`` / ``add_script`` / ``add_function`` (and Ensemble's)
call :func:`ml_model`, :func:`script` and :func:`function` here: every argument
is checked at the call, a model file is read and a Python function is
serialized to TorchScript then, and the bytes are kept in memory in an
:class:`MLObject`, so nothing can fail for these reasons in the middle of a
launch. Starting the entity then stores them (:func:`prepare`, called by its
``prepare``):

* a standard store (an Orchestrator, whose handoff gave the step ``SSDB``,
  ``SSDB_USER``, ``SSDB_PASSWORD`` and a TLS store's ``SSDB_TLS_CA``): stored
  from the driver, as the member the step will be, each distinct key once per
  launch (an ensemble of 100 members sets a model once, not 100 times);
* a colocated store: the objects are written to files in the step's working
  directory (``.simctl-ml/<key>/manifest.json`` and ``.simctl-ml/data/<sha256>``,
  mode 0600, directories 0700), and the store's supervisor, started with
  ``--preload <manifest>``, stores them on every node through
  :func:`preload_from_manifest` once its server answers and before it reports
  ready, so the application finds them from its first instruction.

Keys are the names given, unprefixed, whatever the entity's key prefixing:
the client reads models unprefixed unless ``use_model_ensemble_prefix(True)``,
and the members of an ensemble share one copy. A multi-GPU object (device
``"GPU"``, ``devices_per_node`` N > 1) is stored once per GPU under
``<name>.GPU:<i>`` for i in ``first_device`` .. ``first_device + N - 1``
(:meth:`MLObject.placements`, :func:`store`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from ..core import checks
from ..core.errors import ConfigError
from ..core.steps import ProcessStep
from ..ml import read_model
from . import contract, format as fmt
from .base import check_length
from .client import Client
from .dataset import check_name as check_text
from .server import write_private
from .spec import ModelSpec, Placement

#: the directory, in a colocated model's working directory, of what its store preloads
DIRNAME = ".simctl-ml"
#: version 2: each item carries its spec (a ModelSpec for a model, a Placement for a script)
MANIFEST_VERSION = 2


@attrs.frozen
class MLObject:
    """One ML model or script (a function is a script) to store: its checked
    settings and its bytes. Equal objects have the same settings and bytes."""

    #: "model" or "script"
    kind: str
    name: str
    #: a model's :class:`ModelSpec`; a script's :class:`Placement` (its device(s))
    spec: Placement
    #: SHA-256 of ``data`` (hex): equality without comparing the bytes
    sha256: str = ""
    #: the serialized model, or the script's UTF-8 source
    data: bytes = attrs.field(default=b"", eq=False, repr=False)
    #: how it was added, for messages ("add_ml_model", "add_script", "add_function")
    added_by: str = attrs.field(default="", eq=False)
    #: whether it may replace different contents the store holds under its name (``replace=True``)
    replace: bool = attrs.field(default=False, eq=False)

    def placements(self) -> list[tuple[str, str]]:
        """(key, device) of each copy stored: one, or one per GPU."""
        return self.spec.placements(self.name)

    def store_keys(self) -> list[str]:
        """The store keys it takes."""
        return [key for key, _ in self.placements()]

    def describe(self) -> str:
        """``ML model 'cnn'`` / ``script 'negate'`` / ``function 'timestwo'``."""
        what = {"add_ml_model": "ML model", "add_function": "function"}.get(self.added_by, self.kind)
        return f"{what} {self.name!r}"


def store(client: Client, obj: MLObject) -> None:
    """SET ``obj`` through ``client``: once, or, on several GPUs, once per GPU
    under ``<name>.GPU:<i>``."""
    if isinstance(obj.spec, ModelSpec):
        client.set_model_spec(obj.name, obj.data, obj.spec)
        return
    for key, device in obj.placements():
        client.set_script(key, obj.data.decode("utf-8"), device)


# -- checked at the call -------------------------------------------------------------------------


def _check_name(what: str, name: Any, replace: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{what}: name must be a non-empty str (the key the store keeps it under); "
                          f"got {checks.show(name)}")
    check_text(name, f"{what}: name")
    if name.startswith(fmt.RESERVED) or fmt.dataset_key_form(name):
        raise ConfigError(f"{what}: name {name[:80]!r} " + ("starts with 'simctl.', the prefix of simctl's own keys"
                          if name.startswith(fmt.RESERVED) else "has the form of a dataset's keys") +
                          "; give another name")
    if not isinstance(replace, bool):
        raise ConfigError(f"{what}: replace must be True or False, got {checks.show(replace)}")


def _finish(obj: MLObject) -> MLObject:
    """Check that every key fits, and fill in the digest."""
    for key in obj.store_keys():
        check_length(key, f"{obj.added_by}({obj.name!r})")
    return attrs.evolve(obj, sha256=hashlib.sha256(obj.data).hexdigest())


def ml_model(name: str, backend: str, model: Any = None, model_path: Any = None, device: str = "CPU",
             devices_per_node: int = 1, first_device: int = 0, batch_size: int = 0, min_batch_size: int = 0,
             min_batch_timeout: int = 0, tag: str = "", inputs: Any = None, outputs: Any = None,
             replace: bool = False) -> MLObject:
    """The checked arguments of ``add_ml_model``, with the model's bytes (read
    from ``model_path`` now)."""
    what = f"add_ml_model({name!r:.60})"
    _check_name(what, name, replace)
    spec = ModelSpec.checked(what, backend=backend, device=device, devices_per_node=devices_per_node,
                             first_device=first_device, batch_size=batch_size, min_batch_size=min_batch_size,
                             min_batch_timeout=min_batch_timeout, tag=tag, inputs=inputs, outputs=outputs)
    # Not looked up in this process's plugins: the store's inference workers run the model, with the
    # plugins of the experiment that started them; a backend they do not know is the error of the request.
    if model is not None and model_path is not None:
        raise ConfigError(f"{what}: give the model either in memory (model=bytes) or as a file (model_path=...), "
                          f"not both; got model={checks.show(model, 40)} and model_path={model_path!r:.80}")
    if model is None and model_path is None:
        raise ConfigError(f"{what}: no model: give model=bytes (a serialized model, e.g. from "
                          "simctl.ml.torch.serialize_model) or model_path= (a file torch.jit.save or "
                          "torch.onnx.export wrote)")
    try:
        data = read_model(model, model_path)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    if not data:
        raise ConfigError(f"{what}: the model is empty (0 bytes)" + (f": {model_path!r}" if model_path else ""))
    fmt.model_header(spec, len(data), what)
    return _finish(MLObject("model", name, spec, data=data, added_by="add_ml_model", replace=replace))


def script(name: str, script: Any = None, script_path: Any = None, device: str = "CPU",
           devices_per_node: int = 1, first_device: int = 0, replace: bool = False) -> MLObject:
    """The checked arguments of ``add_script``, with the source (read from
    ``script_path`` now)."""
    what = f"add_script({name!r:.60})"
    _check_name(what, name, replace)
    placement = Placement.checked(what, device=device, devices_per_node=devices_per_node, first_device=first_device)
    if (script is None) == (script_path is None):
        raise ConfigError(f"{what}: give the script either as source text (script=str) or as a file "
                          f"(script_path=...), not {'both' if script is not None else 'neither'}")
    if script_path is not None:
        if not isinstance(script_path, (str, os.PathLike)) or not os.fspath(script_path):
            raise ConfigError(f"{what}: script_path must be a file path; got {checks.show(script_path)}")
        try:
            with open(script_path, encoding="utf-8") as fh:
                script = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 text ({exc.reason})"
            raise ConfigError(f"{what}: script_path {os.fspath(script_path)!r} cannot be read: {why}") from None
    return _source(what, "script_path" if script_path is not None else "script", name, script, placement,
                   "add_script", replace)


def function(name: str, function: Any = None, device: str = "CPU", devices_per_node: int = 1,
             first_device: int = 0, replace: bool = False) -> MLObject:
    """The checked arguments of ``add_function``: a Python function is
    serialized to TorchScript source now (needs torch); a str is that source."""
    what = f"add_function({name!r:.60})"
    _check_name(what, name, replace)
    placement = Placement.checked(what, device=device, devices_per_node=devices_per_node, first_device=first_device)
    if function is None:
        raise ConfigError(f"{what}: no function: give function= a Python function (defined in a file) or its "
                          "TorchScript source (str)")
    if not isinstance(function, str):
        if not callable(function):
            raise ConfigError(f"{what}: function must be a Python function or its TorchScript source (str); "
                              f"got {checks.show(function)}")
        from ..ml.torch import serialize_function  # torch: start-up cost

        try:
            function = serialize_function(function)
        except ConfigError as exc:
            raise ConfigError(f"{what}: function cannot be serialized: {exc}") from None
    return _source(what, "function", name, function, placement, "add_function", replace)


def _source(what: str, arg: str, name: str, source: Any, placement: Placement, added_by: str,
            replace: bool) -> MLObject:
    if not isinstance(source, str) or not source.strip():
        got = "an empty str" if isinstance(source, str) else checks.show(source)
        raise ConfigError(f"{what}: {arg} must be non-empty TorchScript source text; got {got}")
    data = check_text(source, f"{what}: {arg}").encode("utf-8")
    fmt.script_header(placement.device, len(data), what)
    return _finish(MLObject("script", name, placement, data=data, added_by=added_by, replace=replace))


def check_new(owner: str, have: Sequence[MLObject], new: MLObject, what: str = "") -> None:
    """ConfigError (saying ``what`` was called; default: the add_* call of
    ``new``) if ``new`` would take a key one of ``have`` takes: models, scripts
    and functions share the store's keys, so a name is taken once per entity."""
    taken = {key: obj for obj in have for key in obj.store_keys()}
    clash = next((key for key in new.store_keys() if key in taken), None)
    if clash is not None:
        old = taken[clash]
        raise ConfigError(f"{what or f'{new.added_by}({new.name!r})'}: {owner} already has {old.describe()} "
                          f"(key {clash!r} in the store); models, scripts and functions share the store's keys: "
                          f"give {new.describe()} another name")


# -- at launch ----------------------------------------------------------------------------------


def distinct(owned: Iterable[tuple[str, MLObject]], where: str) -> list[MLObject]:
    """The objects to store into one store, each once. ConfigError if two
    owners put different objects under one key (``where`` names the store)."""
    by_key: dict[str, tuple[str, MLObject]] = {}
    out: list[MLObject] = []
    for owner, obj in owned:
        new = False
        for key in obj.store_keys():
            seen = by_key.get(key)
            if seen is None:
                by_key[key] = (owner, obj)
                new = True
            elif seen[1] is not obj and seen[1] != obj:
                raise ConfigError(f"{seen[0]} and {owner} both load key {key!r} into {where}, with different "
                                  f"contents ({seen[1].describe()} and {obj.describe()}); one key holds one of "
                                  "them: give them different names")
        if new:
            out.append(obj)
    return out


def manifest_path(step: ProcessStep) -> str:
    """Where the manifest of ``step``'s colocated store goes (a pure function of the step)."""
    return os.path.join(step.cwd, DIRNAME, *step.key.split("/"), "manifest.json")


def prepare(steps: Sequence[ProcessStep]) -> None:
    """Store the ML objects of each step's entity (``entity.ml``): into its
    standard store now, or into files its colocated store preloads."""
    shared: dict[tuple[str, str, str, str], list[tuple[str, MLObject]]] = {}
    colocated: list[tuple[ProcessStep, list[MLObject]]] = []
    for step in steps:
        objs = list(getattr(step.entity, "ml", None) or ())
        if not objs:
            continue
        if getattr(step.entity, "colocated_db", None) is not None:
            colocated.append((step, distinct(((step.name, o) for o in objs), f"{step.name}'s colocated store")))
            continue
        address = step.env.get(contract.ADDRESS)
        if not address:
            raise ConfigError(f"{step.name}: has {', '.join(o.describe() for o in objs)} to load, but its "
                              f"environment has no {contract.ADDRESS} (the store's address); start a store first")
        key = (address, step.env.get(contract.USER) or "", step.secret_env.get(contract.PASSWORD, ""),
               step.env.get(contract.TLS_CA) or "")
        shared.setdefault(key, []).extend((f"model {step.name!r}", o) for o in objs)
    todo = [(key, distinct(owned, f"the store at {key[0]}")) for key, owned in shared.items()]
    for step, objs in colocated:
        write_manifest(step, objs)
    for (address, user, password, tls_ca), objs in todo:
        with Client(address=address, username=user, password=password, tls_ca=tls_ca, logger_name="simctl") as client:
            client.use_model_ensemble_prefix(False)
            for obj in [o for o in objs if not held(client, o, address)]:  # every one checked before any is stored
                store(client, obj)


def held(client: Client, obj: MLObject, where: str) -> bool:
    """Whether the store holds ``obj`` already, byte for byte (its model or
    source and its settings), under each of its keys. ConfigError when it
    holds different contents under one of them (stored by an earlier start,
    or by another driver) and ``obj`` was not added with ``replace=True``:
    one name holds one model or script in a store."""
    same = True
    for key, device in obj.placements():
        value = client._key_cmd(obj.added_by, key, "GET", key, kind=obj.kind)
        if value is None:
            same = False
            continue
        if _contents(value) == _contents(_value(obj, device)):
            continue
        same = False
        if not obj.replace:
            found = fmt.kind_name(fmt.kind_of_value(value))
            raise ConfigError(f"{obj.added_by}({obj.name!r}): the store at {where} holds {found} with other "
                              f"contents under key {key!r} (stored by an earlier start, or another driver, and "
                              f"perhaps in use); one name holds one model or script: give {obj.describe()} another "
                              f"name, or add it with replace=True to replace it")
    return same


def _value(obj: MLObject, device: str) -> bytes:
    """The value ``obj`` is stored as on ``device`` (its header's id aside)."""
    if isinstance(obj.spec, ModelSpec):
        return fmt.model_header(obj.spec.on(device), len(obj.data)) + obj.data
    return fmt.script_header(device, len(obj.data)) + obj.data


def _contents(value: bytes) -> tuple[bytes, Any, bytes]:
    """A stored model's or script's magic, header fields (its ``id`` aside) and payload."""
    value = bytes(value)
    size = int.from_bytes(value[4:8], "little") if len(value) >= 8 else 0
    try:
        fields = json.loads(value[8:8 + size])
    except ValueError:
        fields = None
    if isinstance(fields, dict):
        fields.pop("id", None)
    return value[:4], fields, value[8 + size:]


# -- colocated stores: a manifest and its files ----------------------------------------------------


def _private_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def write_manifest(step: ProcessStep, objs: Sequence[MLObject]) -> str:
    """Write ``objs`` for ``step``'s colocated store: each object's bytes once
    per working directory (``data/<sha256>``), and the manifest naming them.
    Nothing is written if the working directory does not exist (the step
    fails on that anyway). Returns the manifest's path."""
    argv = step.per_node or []
    path = argv[argv.index("--preload") + 1] if "--preload" in argv[:-1] else manifest_path(step)
    root = os.path.join(step.cwd, DIRNAME)
    if not os.path.isdir(step.cwd):
        return path
    data_dir = os.path.join(root, "data")
    _private_dir(root)
    _private_dir(data_dir)
    _private_dir(os.path.dirname(path))
    items = []
    for obj in objs:
        blob = os.path.join(data_dir, obj.sha256)
        if not (os.path.isfile(blob) and os.path.getsize(blob) == len(obj.data)):
            write_private(blob, obj.data)
        fields = attrs.asdict(obj, filter=lambda a, _v: a.name != "data")
        items.append(fields | {"file": os.path.relpath(blob, os.path.dirname(path)), "size": len(obj.data)})

    write_private(path, json.dumps({"version": MANIFEST_VERSION, "items": items}, indent=1).encode("utf-8"))
    return path


def read_manifest(path: str) -> list[MLObject]:
    """The objects a manifest names, with their bytes; ValueError saying what is wrong."""
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not a simctl ML manifest (not JSON: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path} is not a version {MANIFEST_VERSION} simctl ML manifest")
    out = []
    base = os.path.dirname(os.path.abspath(path))
    fields = {a.name for a in attrs.fields(MLObject)} - {"data"}
    for item in manifest.get("items", []):
        blob = os.path.join(base, item["file"])
        try:
            with open(blob, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ValueError(f"cannot read {blob} (the bytes of {item.get('kind')} {item.get('name')!r}): "
                             f"{exc.strerror}") from None
        if hashlib.sha256(data).hexdigest() != item["sha256"]:
            raise ValueError(f"{blob} (the bytes of {item['kind']} {item['name']!r}) changed after it was written "
                             f"(its SHA-256 is not the one recorded)")
        spec = (ModelSpec if item["kind"] == "model" else Placement)(**item["spec"])
        args = {k: v for k, v in item.items() if k in fields and k != "spec"}
        out.append(MLObject(**args, spec=spec, data=data))
    return out


def preload_from_manifest(address_or_socket: str, password: str, path: str, *, username: str | None = None,
                          tls_ca: str | None = None) -> int:
    """Store every object the manifest ``path`` names into the store at
    ``address_or_socket`` (``host:port``, ``unix:///path`` or a socket's
    absolute path), logging in as ``username`` (None: the ``default`` user)
    with ``password``; the number of keys set. Raises (ValueError,
    ConfigError, StoreError) saying what failed."""
    objs = read_manifest(path)
    with Client(address=address_or_socket, username=username or "", password=password, tls_ca=tls_ca or "",
                logger_name="simctl") as client:
        client.use_model_ensemble_prefix(False)
        for obj in objs:
            store(client, obj)
    return sum(len(o.placements()) for o in objs)

