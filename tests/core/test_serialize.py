"""Entities and settings round-trip through cattrs (the manifest relies on it)."""

from __future__ import annotations

import json
import sys

import attrs
import pytest
from hypothesis import given, strategies as st

import simctl
from simctl import BatchSettings, EntityFiles, Model, RunSettings
from simctl.core.plugins import PluginRecord
from simctl.core.serialize import UnknownSettingsWarning, structure, unstructure


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
    # run_args: a run command's flags (the local launcher, which has none, refuses them: issue 16)
    rs = type(exp.create_run_settings("python"))("python", exe_args="sim.py --n 3", run_args={"distribution": "block"},
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
values = st.integers() | st.text(max_size=8) | st.booleans() | st.floats(allow_nan=False)  # None: refused (issue 16)


@given(names, st.dictionaries(names, values, max_size=5), st.lists(st.text(max_size=6), max_size=4),
       # environment values cannot hold NUL (the OS refuses it; simctl refuses it up front)
       st.dictionaries(names, st.text(st.characters(blacklist_characters="\x00"), max_size=5) | st.none(),
                       max_size=3),
       st.none() | st.integers(1, 64), st.booleans())
def test_models_round_trip_for_any_fields(name, params, exe_args, env, nodes, prefix):
    rs = RunSettings("app", exe_args=exe_args, env_vars=env, nodes=nodes)
    m = Model(name, rs, params)
    if prefix:
        m.enable_key_prefixing()
    assert through_json(m, Model) == m


# -- reading imports nothing the data names --------------------------------------------------------------------

HOSTILE = """
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("the module ran")

class Evil:
    pass
"""


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """An importable module that leaves a mark when imported."""
    (tmp_path / "simctl_hostile_probe.py").write_text(HOSTILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "IMPORTED"
    assert "simctl_hostile_probe" not in sys.modules


@pytest.mark.parametrize("tag", ["simctl_hostile_probe:Evil", "simctl_no_such_module:Gone"])
def test_settings_naming_a_module_import_nothing_and_read_as_the_base_class_with_a_warning(hostile, tag):
    data = unstructure(RunSettings("app", nodes=2))
    data["__class__"] = tag
    data["reservation"] = "big-run"  # a field of the class it names, not of the base
    with pytest.warns(UnknownSettingsWarning, match=rf"{tag} \(not installed here\) read as the base class "
                                                    r"RunSettings; dropped the fields it lacks: reservation"):
        back = structure(data, RunSettings)
    assert type(back) is RunSettings and back.exe == "app" and back.nodes == 2
    assert not hostile.exists()


class SiteLauncher(simctl.Launcher):
    name = "site"
    run_settings_class = SiteRunSettings


class SitePlugin:
    @simctl.hookimpl
    def simctl_register_launchers(self):
        return [SiteLauncher]


def test_settings_are_resolved_by_the_launchers_name_through_the_registry(hostile):
    plugs = simctl.make_plugins()
    plugs.register(SitePlugin(), name="site-plugin")
    data = unstructure(SiteRunSettings("app", reservation="big-run"))
    assert structure(data, RunSettings, launcher="site", plugins=plugs) == SiteRunSettings("app", reservation="big-run")
    # written when the plugin's module had another name: the launcher's class, by its name, with nothing imported
    data["__class__"] = "simctl_hostile_probe:SiteRunSettings"
    with pytest.warns(UnknownSettingsWarning, match="read as the class of launcher 'site', SiteRunSettings"):
        back = structure(data, RunSettings, launcher="site", plugins=plugs)
    assert type(back) is SiteRunSettings and back.reservation == "big-run"
    # a launcher not installed here: the base class, its own fields kept
    with pytest.warns(UnknownSettingsWarning, match="dropped the fields it lacks: reservation"):
        back = structure(data, RunSettings, launcher="gone", plugins=plugs)
    assert type(back) is RunSettings and back.exe == "app"
    assert not hostile.exists()


def test_reading_a_manifest_imports_no_module_it_names(hostile, tmp_path):
    from simctl.core import manifest as mf

    evil = {"__class__": "simctl_hostile_probe:Evil", "exe": "x"}
    rec = mf.JobRecord(name="m", entity_type="Model", job_id="1", run=1, launcher="local", key="m",
                       launched_at=1.0, handle={"pid": 1, "settings": evil})
    writer = mf.Writer(str(tmp_path / "exp"))
    writer.save({**mf.Manifest("e", str(tmp_path / "exp"), "local").header(), "run_settings": evil},
                [(rec.identity, json.dumps({**unstructure(rec), "run_settings": evil, "batch_settings": evil}))])
    writer.save(mf.Manifest("e", str(tmp_path / "exp"), "local").header(),  # the journal too
                [(rec.identity, json.dumps({**unstructure(rec), "run_settings": evil}))])
    man = mf.load(str(tmp_path / "exp"))
    assert [r.name for r in man.jobs] == ["m"] and man.jobs[0].handle["settings"] == evil
    book = mf.ManifestFile(str(tmp_path / "exp"), "e", "local")
    assert book.sync([]) == []
    assert not hostile.exists()
