"""Issue 16: within one store, one name holds one model or script. A second
entity storing different contents under it (in one start, or in a later
start while the first one's application may use it) is refused before
anything starts, unless the contents are byte-identical or it was added with
``replace=True``. Real store, real processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
import torch
from _lifecycle_helpers import PY

import simctl
from simctl import ConfigError, Status
from simctl.ml.torch import serialize_model


def torch_model(seed: int) -> bytes:
    torch.manual_seed(seed)
    return serialize_model(torch.nn.Linear(3, 2).eval())


@pytest.fixture
def exp_db(stores: Any) -> tuple[simctl.Experiment, Any]:
    shared = stores.orchestrator(1).emptied()
    return shared.exp, shared.db


def raw(db: Any) -> redis.Redis:
    host, _, port = db.get_address()[0].rpartition(":")
    return redis.Redis(host=host, port=int(port), username=db.username, password=db.password)


def app(exp: simctl.Experiment, tmp_path: Path, name: str) -> simctl.Model:
    return exp.create_model(name, exp.create_run_settings(exe=PY, exe_args=["-c", "pass"]), path=str(tmp_path))


def test_two_entities_of_one_start_with_different_models_under_one_name(tmp_path: Path, exp_db: Any) -> None:
    exp, db = exp_db
    a, b = app(exp, tmp_path, "a"), app(exp, tmp_path, "b")
    a.add_ml_model("net", "TORCH", model=torch_model(0))
    b.add_ml_model("net", "TORCH", model=torch_model(1))
    with pytest.raises(ConfigError, match="model 'a' and model 'b' both load key 'net' into the store, with "
                                          "different contents"):
        exp.start(a, b)
    assert raw(db).dbsize() == 0 and exp.get_status(a, b) == [Status.NEW] * 2


def test_a_later_start_does_not_swap_the_model_an_earlier_one_stored(tmp_path: Path, exp_db: Any) -> None:
    exp, db = exp_db
    a, b, c, d = (app(exp, tmp_path, n) for n in "abcd")
    a.add_ml_model("net", "TORCH", model=torch_model(0))
    b.add_ml_model("net", "TORCH", model=torch_model(1))
    c.add_ml_model("net", "TORCH", model=torch_model(0))  # byte-identical: shared
    d.add_ml_model("net", "TORCH", model=torch_model(1), replace=True)
    exp.start(a)
    with db.client() as client:
        stored = client._one("net", "GET", "net")
        with pytest.raises(ConfigError, match=r"add_ml_model\('net'\): the store at .* holds an ML model with other "
                                              "contents under key 'net' .* add it with replace=True"):
            exp.start(b)
        assert client._one("net", "GET", "net") == stored and exp.get_status(b) == [Status.NEW]
        exp.start(c)
        assert client._one("net", "GET", "net") == stored  # not stored again: the same value, its id too
        exp.start(d)
        assert client.get_model("net") == torch_model(1)
    assert exp.get_status(a, c, d) == [Status.COMPLETED] * 3


def test_a_script_does_not_take_a_models_name_in_a_later_start(tmp_path: Path, exp_db: Any) -> None:
    exp, db = exp_db
    a, b = app(exp, tmp_path, "a"), app(exp, tmp_path, "b")
    a.add_ml_model("net", "TORCH", model=torch_model(0))
    b.add_script("net", script="def f(x):\n    return x\n", replace=True)
    exp.start(a)
    with pytest.raises(simctl.SimctlError, match="key 'net' holds an ML model, not a script"):
        exp.start(b)  # replace=True replaces different contents of its kind; a model is deleted on purpose
    with db.client() as client:
        assert client.get_model("net") == torch_model(0)


def test_replace_must_be_a_bool(tmp_path: Path, exp_db: Any) -> None:
    exp, _ = exp_db
    with pytest.raises(ConfigError, match=r"add_ml_model\('net'\): replace must be True or False, got 'yes'"):
        app(exp, tmp_path, "a").add_ml_model("net", "TORCH", model=b"x", replace="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"add_script\('simctl.x'\): name 'simctl.x' starts with 'simctl.'"):
        app(exp, tmp_path, "a").add_script("simctl.x", script="def f(x):\n    return x\n")


def test_names_and_sources_utf8_cannot_encode_are_refused_at_the_call(tmp_path: Path, exp_db: Any) -> None:
    exp, _ = exp_db
    m = app(exp, tmp_path, "a")
    with pytest.raises(ConfigError, match=r"add_ml_model\('\\ud800'\): name must be text UTF-8 can encode"):
        m.add_ml_model("\ud800", "TORCH", model=b"x")  # a raw UnicodeEncodeError before
    with pytest.raises(ConfigError, match=r"add_script\('s'\): script must be text UTF-8 can encode"):
        m.add_script("s", script="def f(x):\n    return x  # \udcff\n")
    with pytest.raises(ConfigError, match=r"add_ml_model\('\{d\}.tensor.t'\): name .* has the form of a dataset's"):
        m.add_ml_model("{d}.tensor.t", "TORCH", model=b"x")
    assert m.ml == []
