"""One ML model spec (simctl.store.spec.ModelSpec), checked once where it is
made: every way a model gets into the store (Client.set_model,
set_model_from_file, set_model_multigpu, set_model_spec, an entity's
add_ml_model) gives the same error for the same mistake, and the spec is
what the stored header and the colocated store's preload manifest carry."""

# ruff: noqa: F811  (the fixtures imported from test_store_client are parameters of the tests)
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from _store_helpers import raw_keys

import simctl
from simctl import ConfigError
from simctl.store import Client, ModelSpec, format as fmt, preload
from simctl.store.spec import Placement

MISTAKES: list[dict[str, Any]] = [
    {"backend": ""}, {"backend": 7}, {"device": "TPU"}, {"device": "GPU:x"}, {"batch_size": -1},
    {"batch_size": 1.5}, {"min_batch_size": True}, {"min_batch_timeout": -2}, {"batch_size": 2, "min_batch_size": 3},
    {"tag": 3}, {"inputs": ["x", ""]}, {"outputs": 4},
]


def _words(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    """The message without the call that made it (``set_model('m'): ``)."""
    return str(exc.value).split("): ", 1)[1]


@pytest.mark.parametrize("bad", MISTAKES, ids=[repr(m) for m in MISTAKES])
def test_one_mistake_one_message_whichever_way_in(client: Client, tmp_path: Path, bad: dict[str, Any]) -> None:
    args: dict[str, Any] = {"backend": "TORCH", **bad}
    (tmp_path / "m.pt").write_bytes(b"model")
    messages = set()
    with pytest.raises(ConfigError, match=r"^set_model\('m'\): ") as exc:
        client.set_model("m", b"model", **args)
    messages.add(_words(exc))
    with pytest.raises(ConfigError, match=r"^set_model_from_file\('m'\): ") as exc:
        client.set_model_from_file("m", tmp_path / "m.pt", **args)
    messages.add(_words(exc))
    multi = {k: v for k, v in args.items() if k != "device"}
    if "device" not in bad:
        with pytest.raises(ConfigError, match=r"^set_model_multigpu\('m'\): ") as exc:
            client.set_model_multigpu("m", b"model", first_gpu=0, num_gpus=2, **multi)
        messages.add(_words(exc))
    with pytest.raises(ConfigError, match=r"^add_ml_model\('m'\): ") as exc:
        preload.ml_model("m", model=b"model", **args)
    messages.add(_words(exc))
    with pytest.raises(ConfigError) as exc:
        ModelSpec(**args)
    messages.add(str(exc.value))
    assert len(messages) == 1, messages
    assert raw_keys(client) == set()  # nothing stored


def test_a_spec_is_checked_when_made_and_frozen():
    spec = ModelSpec(backend="ONNX", inputs="x", outputs=["y", "z"], batch_size=4, threads_per_queue=2)
    assert (spec.inputs, spec.outputs, spec.device) == (("x",), ("y", "z"), "CPU")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        spec.batch_size = 8  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"^cnn: threads_per_queue must be a positive integer or None, got 0"):
        ModelSpec.checked("cnn", backend="ONNX", threads_per_queue=0)
    with pytest.raises(ConfigError, match=r"device 'GPU:1' names one GPU, but devices_per_node is 2"):
        ModelSpec(backend="ONNX", device="GPU:1", devices_per_node=2)
    with pytest.raises(ConfigError, match="first_device must be an integer >= 0, got -1"):
        Placement(device="GPU", first_device=-1)


def test_placements():
    assert ModelSpec(backend="X").placements("m") == [("m", "CPU")]
    assert ModelSpec(backend="X", devices_per_node=4, first_device=2).placements("m") == [("m", "CPU")]
    assert Placement(device="GPU:5").placements("s") == [("s", "GPU:5")]
    assert Placement(device="GPU").placements("s") == [("s", "GPU")]
    assert Placement(device="GPU", first_device=3).placements("s") == [("s", "GPU:3")]
    assert Placement(device="GPU", devices_per_node=2, first_device=1).placements("s") == [
        ("s.GPU:1", "GPU:1"), ("s.GPU:2", "GPU:2")]
    one = ModelSpec(backend="X", device="GPU", devices_per_node=2, tag="t").on("GPU:1")
    assert (one.device, one.devices_per_node, one.first_device, one.tag) == ("GPU:1", 1, 0, "t")


def test_the_header_carries_the_spec(client: Client) -> None:
    spec = ModelSpec(backend="TORCH", device="GPU:1", batch_size=8, min_batch_size=2, min_batch_timeout=50,
                     tag="v2", inputs="x", outputs=["y"], inter_op_threads=2)
    client.set_model_spec("m", b"MODEL", spec)
    value = bytes(client._one("m", "GET", "m"))
    head = fmt.parse_model_header(value)
    assert head[:-1] == ("TORCH", "GPU:1", 8, 2, 50, "v2", ["x"], ["y"])
    fields = json.loads(value[8:head.offset])
    assert fields["inter_op_threads"] == 2 and "threads_per_queue" not in fields  # a thread count only when set
    client.set_model("plain", b"MODEL", "TORCH")
    assert not set(json.loads(bytes(client._one("plain", "GET", "plain"))[8:-5])) - set(fmt.MODEL_FIELDS) - {"id"}
    client.set_model_spec("multi", b"MODEL", ModelSpec(backend="ONNX", device="GPU", devices_per_node=2))
    assert {k for k in raw_keys(client) if k.startswith("multi")} == {"multi.GPU:0", "multi.GPU:1"}
    assert fmt.parse_model_header(bytes(client._one("multi.GPU:1", "GET", "multi.GPU:1"))).device == "GPU:1"
    with pytest.raises(ConfigError, match=r"set_model\('x'\): spec must be a ModelSpec, got dict"):
        client.set_model_spec("x", b"MODEL", {"backend": "ONNX"})  # type: ignore[arg-type]


def test_the_manifest_carries_the_spec(tmp_path: Path) -> None:
    objs = [preload.ml_model("cnn", "TORCH", model=b"\x00model", device="GPU", devices_per_node=2, batch_size=4,
                             inputs=["x"], outputs="y"),
            preload.script("neg", script="def neg(x):\n    return -x\n", device="GPU:3")]
    objs.append(attrs.evolve(objs[0], name="threads", spec=attrs.evolve(objs[0].spec, intra_op_threads=4)))
    step = simctl.ProcessStep(name="m", argv=["x"], cwd=str(tmp_path), key="m")
    back = preload.read_manifest(preload.write_manifest(step, objs))
    assert back == objs and [o.data for o in back] == [o.data for o in objs]
    assert isinstance(back[0].spec, ModelSpec) and type(back[1].spec) is Placement
    assert back[2].spec.intra_op_threads == 4 and back[0].spec.inputs == ("x",)
