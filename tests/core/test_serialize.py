"""Entities and settings round-trip through cattrs (the manifest relies on it)."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simctl import BatchSettings, EntityFiles, Model, RunSettings
from simctl.core.plugins import PluginRecord
from simctl.core.serialize import structure, unstructure


@attrs.define(eq=True)
class SiteRunSettings(RunSettings):
    """A launcher plugin's own settings class (defined at module level so it can be imported)."""

    reservation: str | None = None


def through_json(obj, cls):
    data = json.loads(json.dumps(unstructure(obj)))
    return structure(data, cls)


def test_model_round_trip(exp, rs, write):
    f = write("in.txt", ";x;")
    bs = BatchSettings(nodes=2, time="10:00:00", queue="q", batch_args={"exclusive": None})
    m = exp.create_model("m", rs, params={"x": 1, "name": "Ellie", "tol": 0.5}, batch_settings=bs,
                         params_as_args=["x"], enable_key_prefixing=True)
    m.attach_generator_files(to_configure=str(f), to_copy=str(f.parent))
    m.register_incoming_entity("other")
    back = through_json(m, Model)
    assert back == m
    assert back is not m and back.run_settings is not rs
    assert type(back.run_settings) is type(rs)
    assert isinstance(back.batch_settings, BatchSettings) and back.batch_settings.batch_args == {"exclusive": None}
    assert isinstance(back.files, EntityFiles) and back.files.to_configure == [str(f)]
    assert back.params_to_args() == ["-x", "1"]


def test_ensemble_members_round_trip(exp, rs):
    ens = exp.create_ensemble("e", params={"a": [1, 2], "b": ["x"]}, run_settings=rs)
    for m in ens:
        assert through_json(m, Model) == m


def test_run_settings_round_trip_keeps_the_class(exp):
    rs = exp.create_run_settings("python", exe_args="sim.py --n 3", run_args={"distribution": "block"},
                                 env_vars={"A": "1", "B": None}, walltime="01:00:00")
    rs.set_nodes(2)
    rs.set_hostlist(["n1", "n2"])
    data = unstructure(rs)
    assert data["__class__"] == f"{type(rs).__module__}:{type(rs).__qualname__}"
    back = through_json(rs, RunSettings)
    assert back == rs and type(back) is type(rs)


def test_plugin_settings_subclass_round_trips_as_itself():
    rs = SiteRunSettings("app", reservation="big-run", nodes=4)
    back = through_json(rs, RunSettings)
    assert type(back) is SiteRunSettings
    assert back == rs and back.reservation == "big-run"
    m = Model("m", rs)
    assert type(through_json(m, Model).run_settings) is SiteRunSettings


def test_batch_settings_round_trip():
    bs = BatchSettings(nodes=4, time=90, queue="debug", account="proj", batch_args={"mem": "4G", "x": None},
                       hostlist=["a"], preamble=["module load mpi"], array=True)
    back = through_json(bs, BatchSettings)
    assert back == bs and back.time == "01:30:00"


def test_a_class_tag_naming_something_else_is_refused():
    data = unstructure(RunSettings("echo"))
    data["__class__"] = "simctl.core.settings:BatchSettings"
    with pytest.raises(Exception, match="is not a RunSettings class"):
        structure(data, RunSettings)


def test_plugin_record_round_trip():
    rec = PluginRecord("lhs", "simctl-lhs", "0.1.0", False, "unavailable", None, {"strategy": ["lhs"]},
                       {"lhs": "install numpy"}, ["simctl_register_strategies"])
    assert through_json(rec, PluginRecord) == rec


names = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
values = st.integers() | st.text(max_size=8) | st.booleans() | st.floats(allow_nan=False) | st.none()


@given(names, st.dictionaries(names, values, max_size=5), st.lists(st.text(max_size=6), max_size=4),
       # environment values cannot hold NUL (the OS refuses it; simctl refuses it up front)
       st.dictionaries(names, st.text(st.characters(blacklist_characters="\x00"), max_size=5) | st.none(),
                       max_size=3),
       st.none() | st.integers(1, 64), st.booleans())
def test_models_round_trip_for_any_fields(name, params, exe_args, env, nodes, prefix):
    rs = RunSettings("app", exe_args=exe_args, env_vars=env, nodes=nodes)
    m = Model(name, rs, params, key_prefixing=prefix)
    assert through_json(m, Model) == m
