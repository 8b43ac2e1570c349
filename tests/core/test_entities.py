"""Models and ensembles as the reference documents describe them: names,
key prefixing, params_as_args, members, add_model, attached files and the
"created" hook."""

from __future__ import annotations

import os

import pytest

import simctl
from simctl import Ensemble, Model

# -- names ------------------------------------------------------------------------------------

BAD_NAMES = ["", "   ", "a/b", "a\\b", "nul\0byte", ".", "..", ".hidden", "/abs", None, 3]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_model_names(exp, rs, exp_path, name):
    with pytest.raises(simctl.ConfigError, match="name") as err:
        exp.create_model(name, rs)
    assert repr(name) in str(err.value)
    assert not exp_path.exists()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_ensemble_names(exp, rs, exp_path, name):
    with pytest.raises(simctl.ConfigError, match="name") as err:
        exp.create_ensemble(name, params={"a": [1]}, run_settings=rs)
    assert repr(name) in str(err.value)
    assert not exp_path.exists()


def test_renaming_a_model_is_validated_too(exp, rs):
    m = exp.create_model("m", rs)
    with pytest.raises(simctl.ConfigError, match="'x/y'"):
        m.name = "x/y"
    assert m.name == "m"


def test_names_with_ordinary_punctuation_are_fine(exp, rs):
    for name in ("model-1", "run_2.5", "Ellie John", "ünïcode"):
        assert exp.create_model(name, rs).name == name


# -- models --------------------------------------------------------------------------------------


def test_model_from_the_model_guide(exp, rs, tmp_path):
    bs = simctl.BatchSettings(nodes=1)
    m = exp.create_model("model", rs, params={"THERMO": 1}, path=str(tmp_path / "here"), batch_settings=bs)
    assert isinstance(m, Model) and m.type == "Model"
    assert (m.name, m.params, m.run_settings, m.batch_settings) == ("model", {"THERMO": 1}, rs, bs)
    assert m.path == str(tmp_path / "here")


def test_key_prefixing(exp, rs):
    m = exp.create_model("m", rs)
    assert m.query_key_prefixing() is False
    m.enable_key_prefixing()
    assert m.query_key_prefixing() is True
    m.disable_key_prefixing()
    assert m.query_key_prefixing() is False
    assert exp.create_model("p", rs, enable_key_prefixing=True).query_key_prefixing() is True


def test_register_incoming_entity(exp, rs):
    a, b = exp.create_model("a", rs), exp.create_model("b", rs)
    b.register_incoming_entity(a)
    b.register_incoming_entity("a")
    b.register_incoming_entity("other")
    assert b.incoming_entities == ["a", "other"]


def test_params_to_args(exp, rs):
    m = exp.create_model("m", rs, params={"steps": 10, "n": 4, "tol": 1e-3, "label": "a b"},
                         params_as_args=["steps", "n", "label"])
    assert m.params_to_args() == ["--steps=10", "-n", "4", "--label=a b"]


def test_params_as_args_must_name_params(exp, rs):
    with pytest.raises(simctl.ConfigError, match=r"params_as_args names \['x'\].*\['n'\]"):
        exp.create_model("m", rs, params={"n": 1}, params_as_args=["x"])


def test_run_settings_must_be_run_settings(exp):
    with pytest.raises(simctl.ConfigError, match="must be a RunSettings"):
        exp.create_model("m", {"exe": "echo"})


def test_attach_files_checks_they_exist(exp, rs, write, tmp_path):
    m = exp.create_model("m", rs)
    good = write("in.txt", "x")
    with pytest.raises(simctl.ConfigError, match=r"file to copy does not exist: .*nope.txt"):
        m.attach_generator_files(to_copy=[str(good), str(tmp_path / "nope.txt")])
    with pytest.raises(simctl.ConfigError, match="file to symlink does not exist"):
        m.attach_generator_files(to_symlink=str(tmp_path / "gone"))
    with pytest.raises(simctl.ConfigError, match="file to configure does not exist"):
        m.attach_generator_files(to_configure=[str(tmp_path / "missing.in")])
    assert m.files == simctl.EntityFiles()  # nothing attached by a failed call


def test_attach_files_makes_paths_absolute_and_walks_configure_dirs(exp, rs, write, tmp_path, monkeypatch):
    a = write("conf/a.in", ";x;")
    b = write("conf/sub/b.in", ";x;")
    data = write("data.bin", b"\0\1")
    monkeypatch.chdir(tmp_path / "src")
    m = exp.create_model("m", rs, params={"x": 1})
    m.attach_generator_files(to_copy="data.bin", to_symlink=["conf"], to_configure="conf")
    assert m.files.to_copy == [str(data)]
    assert m.files.to_symlink == [str(tmp_path / "src" / "conf")]
    assert sorted(m.files.to_configure) == sorted([str(a), str(b)])
    assert all(os.path.isabs(p) for p in m.files.to_configure)


# -- ensembles -------------------------------------------------------------------------------------


def test_ensemble_iteration_len_and_lookup(exp, rs):
    ens = exp.create_ensemble("e", params={"x": [1, 2, 3]}, run_settings=rs)
    assert isinstance(ens, Ensemble) and ens.type == "Ensemble"
    assert len(ens) == 3
    members = list(ens)
    assert [m.name for m in members] == ["e_0", "e_1", "e_2"]
    assert ens["e_1"] is members[1] and ens[2] is members[2]
    assert "e_0" in ens and members[0] in ens and "e_9" not in ens
    assert list(ens) == members  # the same objects every time
    with pytest.raises(KeyError, match="no member 'e_9'"):
        ens["e_9"]
    assert ens.models == members


def test_ensemble_members_get_copies_of_the_ensemble_settings(exp, rs):
    ens = exp.create_ensemble("e", params={"x": [1, 2], "y": ["a"]}, params_as_args=["x", "y"],
                              run_settings=rs)
    for m, x in zip(ens, (1, 2)):
        assert m.run_settings == rs and m.run_settings is not rs  # each its own (issue 18)
        assert m.params_to_args() == ["-x", str(x), "-y", "a"]


def test_add_model_by_hand(exp, rs):
    ens = exp.create_ensemble("manual")
    assert len(ens) == 0
    a, b = exp.create_model("a", rs), exp.create_model("b", rs)
    ens.add_model(a)
    ens.add_model(b)
    assert len(ens) == 2 and list(ens) == [a, b] and ens["b"] is b


def test_add_model_after_expansion(exp, rs):
    ens = exp.create_ensemble("e", params={"x": [1, 2]}, run_settings=rs)
    extra = exp.create_model("extra", rs, params={"x": 9})
    ens.add_model(extra)
    assert [m.name for m in ens] == ["e_0", "e_1", "extra"]
    late = exp.create_model("late", rs)
    ens.add_model(late)  # after the members were made
    assert ens[-1] is late and len(ens) == 4


def test_member_name_used_twice_is_an_error(exp, rs):
    ens = exp.create_ensemble("e", params={"x": [1, 2]}, run_settings=rs)
    ens.add_model(exp.create_model("extra", rs))
    with pytest.raises(simctl.ConfigError, match="already has a member named 'extra'"):
        ens.add_model(exp.create_model("extra", rs))
    with pytest.raises(simctl.ConfigError, match="already has a member named 'e_1'"):
        ens.add_model(exp.create_model("e_1", rs))
    ens.add_model(exp.create_model("e_2", rs))  # no generated member has that name
    ens.add_model(exp.create_model("e_01", rs))  # nor this one: members are e_0 and e_1
    assert [m.name for m in ens] == ["e_0", "e_1", "extra", "e_2", "e_01"]
    with pytest.raises(simctl.ConfigError, match="already has a member named 'e_0'"):
        ens.add_model(exp.create_model("e_0", rs))


def test_add_model_takes_models_only(exp):
    ens = exp.create_ensemble("e")
    with pytest.raises(simctl.ConfigError, match="add_model takes a Model, got str"):
        ens.add_model("e_0")


def test_ensemble_with_settings_but_nothing_to_expand(exp, rs):
    with pytest.raises(simctl.ConfigError, match="no params and no replicas"):
        exp.create_ensemble("e", run_settings=rs)


def test_ensemble_key_prefixing_and_incoming(exp, rs):
    ens = exp.create_ensemble("e", replicas=2, run_settings=rs)
    ens.enable_key_prefixing()
    assert ens.query_key_prefixing() is True
    assert all(m.query_key_prefixing() for m in ens)
    ens.register_incoming_entity("db-writer")
    assert all(m.incoming_entities == ["db-writer"] for m in ens)


def test_ensemble_attached_files_reach_every_member_but_not_added_models(exp, rs, write):
    f = write("in.txt", "x = ;x;")
    ens = exp.create_ensemble("e", params={"x": [1, 2]}, run_settings=rs)
    own = exp.create_model("own", rs)
    ens.add_model(own)
    list(ens)
    ens.attach_generator_files(to_configure=str(f))
    assert [m.files.to_configure for m in ens] == [[str(f)], [str(f)], []]


def test_attaching_files_without_the_inline_values_changes_nothing(exp, rs, write):
    good = write("good.in", "THERMO = ;[1,2];")
    bad = write("bad.in", "nothing here")
    ens = exp.create_ensemble("e", params={"THERMO"}, run_settings=rs)
    ens.attach_generator_files(to_configure=str(good))
    with pytest.raises(simctl.ConfigError, match=r"\['THERMO'\] have no values"):
        ens.attach_generator_files(to_configure=str(bad))
    assert ens.files.to_configure == [str(good)]
    assert [m.params for m in ens] == [{"THERMO": 1}, {"THERMO": 2}]


# -- the "created" hook ------------------------------------------------------------------------------


def test_created_hook_fires_for_models_ensembles_and_each_member_once(exp, rs, recorder):
    m = exp.create_model("m", rs)
    ens = exp.create_ensemble("e", params={"x": [1, 2, 3]}, run_settings=rs)
    calls = recorder.of("simctl_entity_created")
    assert [c["entity"] for c in calls] == [m, ens]
    assert all(c["experiment"] is exp for c in calls)
    members = list(ens)
    list(ens)
    ens["e_1"]
    created = [c["entity"] for c in recorder.of("simctl_entity_created")]
    assert created[:2] == [m, ens]
    assert created[2:] == members  # once each, when first made


def test_created_hook_errors_do_not_stop_other_plugins(exp, rs, plugs, recorder):
    class Raises:
        @simctl.hookimpl
        def simctl_entity_created(self, entity):
            raise RuntimeError("bad plugin")

    plugs.register(Raises(), name="raises")
    m = exp.create_model("m", rs)
    assert [c["entity"] for c in recorder.of("simctl_entity_created")] == [m]


def test_created_hook_may_adjust_the_entity(exp, rs, plugs):
    class Prefixer:
        @simctl.hookimpl
        def simctl_entity_created(self, entity):
            if isinstance(entity, Model):
                entity.enable_key_prefixing()

    plugs.register(Prefixer(), name="prefixer")
    ens = exp.create_ensemble("e", replicas=2, run_settings=rs)
    assert all(m.query_key_prefixing() for m in ens)


def test_ensemble_key_prefixing_reaches_added_models_before_and_after_expansion(exp, rs):
    ens = exp.create_ensemble("e", params={"x": [1]}, run_settings=rs)
    early = exp.create_model("early", rs)
    ens.add_model(early)
    ens.enable_key_prefixing()
    late = exp.create_model("late", rs)
    ens.add_model(late)
    assert early.query_key_prefixing() and ens["e_0"].query_key_prefixing()
    assert not late.query_key_prefixing()  # added after the call
    ens.enable_key_prefixing()
    assert ens.query_key_prefixing()


@pytest.mark.parametrize("strategy", ["all_perm", "step"])
def test_n_models_or_seed_with_a_strategy_that_ignores_them_is_an_error(exp, rs, strategy):
    with pytest.raises(simctl.ConfigError, match=f"{strategy}.*does not use n_models"):
        exp.create_ensemble("e", params={"a": [1, 2]}, run_settings=rs, perm_strategy=strategy, n_models=1)
    with pytest.raises(simctl.ConfigError, match="does not use seed"):
        exp.create_ensemble("e", params={"a": [1, 2]}, run_settings=rs, perm_strategy=strategy, seed=3)


def test_names_given_as_a_set_expand_in_sorted_order(exp, rs, write):
    f = write("in.txt", "B = ;[1,2];\nA = ;[3,4];\n")
    ens = exp.create_ensemble("e", params={"B", "A"}, run_settings=rs)
    ens.attach_generator_files(to_configure=[f])
    assert list(ens.resolved_params()) == ["A", "B"]
    assert ens[0].params == {"A": 3, "B": 1} and ens[1].params == {"A": 3, "B": 2}
