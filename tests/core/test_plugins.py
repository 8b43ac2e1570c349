"""The plugin system: the factory, entry-point loading, registries, broken and
clashing plugins, the blocklist, and the hook specs themselves."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pluggy
import pytest
from _paths import REPO

import simctl
from simctl.core import hookspecs
from simctl.core.plugins import DISABLE_ENV, Source, call_hook, hook_names, source_of

#: a directory holding affine_backend.py, a backend plugin that is no installed entry point
WORKER_PLUGINS = REPO / "tests" / "data" / "worker-plugins"
BUILTIN_STRATEGIES = {"all_perm", "step", "random"}


class Const:
    """A minimal strategy: ``n`` copies of the first value of every parameter."""

    def __init__(self, name: str, n: int = 2):
        self.name, self.n = name, n

    def expand(self, names, values, n_models=None, seed=None):
        return [{k: v[0] for k, v in zip(names, values)} for _ in range(self.n)]


class StrategyPlugin:
    def __init__(self, *strategies):
        self.strategies = list(strategies)

    @simctl.hookimpl
    def simctl_register_strategies(self):
        return self.strategies


# -- the factory and the built-ins --------------------------------------------------


def test_builtin_plugins_come_from_entry_points(plugs):
    assert BUILTIN_STRATEGIES <= set(plugs.names("strategy"))
    assert "local" in plugs.names("launcher")
    by_name = {r.name: r for r in plugs.records}
    for name in BUILTIN_STRATEGIES:
        rec = by_name[name]
        assert rec.builtin is True
        assert rec.distribution == "simctl-hpc"
        assert rec.version == simctl.__version__
        assert rec.status == "ok", rec.error
        assert rec.provides == {"strategy": [name]}
        assert rec.hooks == ["simctl_register_strategies"]
        assert rec.families == ["strategy"]


def test_every_builtin_is_a_declared_entry_point(plugs):
    """The built-ins are registered in pyproject.toml like any third party's."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10 (scripts/test-pythons.sh)
        import tomli as tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["simctl"]
    loaded = {r.name for r in plugs.records if r.builtin}
    assert loaded == set(declared)


def test_each_factory_call_is_a_fresh_manager(clean_env):
    a, b = simctl.make_plugins(), simctl.make_plugins()
    assert a.pm is not b.pm
    a.register(StrategyPlugin(Const("only_in_a")), name="a-only")
    assert "only_in_a" in a.names("strategy")
    assert "only_in_a" not in b.names("strategy")


def test_no_entry_points_gives_an_empty_manager(clean_env):
    plugs = simctl.make_plugins(load_entrypoints=False)
    assert plugs.records == []
    assert plugs.names("strategy") == []
    with pytest.raises(simctl.ConfigError, match=r"unknown strategy 'all_perm'; installed: \(none installed\)"):
        plugs.get("strategy", "all_perm")


@pytest.mark.slow
def test_importing_simctl_builds_no_plugin_manager():
    code = ("import simctl, simctl.core.plugins as p, sys; "
            "assert p._default is None; "
            "assert not [m for m in sys.modules if m.startswith('simctl.plugins')], 'plugins imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_hookimpl_is_the_public_marker_and_the_spec_marker_is_not():
    assert isinstance(simctl.hookimpl, pluggy.HookimplMarker)
    assert simctl.hookimpl.project_name == "simctl"
    assert hookspecs.hookspec.project_name == "simctl"
    assert "hookimpl" in simctl.__all__
    assert "hookspec" not in simctl.__all__ and not hasattr(simctl, "hookspec")


# -- the hook specs ------------------------------------------------------------------------


def _spec_functions():
    return {name: fn for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and hasattr(fn, "simctl_spec")}


def test_every_hook_is_a_spec_with_a_docstring():
    specs = _spec_functions()
    assert set(specs) == set(hook_names())
    assert {"simctl_register_launchers", "simctl_register_backends", "simctl_register_strategies",
            "simctl_entity_created", "simctl_entity_before_launch", "simctl_entity_status_changed",
            "simctl_entity_finished"} <= set(specs)
    for name, fn in specs.items():
        assert name.startswith("simctl_")
        doc = inspect.getdoc(fn)
        assert doc and len(doc) > 60, f"{name} needs a docstring saying when, arguments, result"


def test_first_result_hooks_say_so():
    for name, fn in _spec_functions().items():
        if fn.simctl_spec.get("firstresult"):
            assert "first" in inspect.getdoc(fn).lower(), name


def test_plugin_author_docs_list_every_hook():
    text = (REPO / "docs" / "plugin-authors.md").read_text()
    missing = [h for h in hook_names() if f"`{h}" not in text]
    assert not missing, f"docs/plugin-authors.md does not document {missing}"


# -- in-process plugins ------------------------------------------------------------------


def test_in_process_strategy_is_registered_and_usable(plugs, exp, rs):
    record = plugs.register(StrategyPlugin(Const("const", n=3)), name="my-strategies")
    assert record.status == "ok"
    assert record.distribution is None and record.builtin is False
    assert record.hooks == ["simctl_register_strategies"]
    assert "const" in plugs.names("strategy")
    assert record.provides == {"strategy": ["const"]}
    ens = exp.create_ensemble("e", params={"a": [7, 8], "b": "x"}, run_settings=rs, perm_strategy="const")
    assert [m.params for m in ens] == [{"a": 7, "b": "x"}] * 3


def test_registering_a_second_plugin_under_a_taken_name_is_an_error(plugs):
    plugs.register(StrategyPlugin(Const("one")), name="mine")
    with pytest.raises(simctl.PluginError, match=r"'mine'.*already has that name"):
        plugs.register(StrategyPlugin(Const("two")), name="mine")
    assert "one" in plugs.names("strategy") and "two" not in plugs.names("strategy")


def test_two_in_process_plugins_providing_one_name_is_an_error_naming_both(plugs, exp, rs):
    alpha = plugs.register(StrategyPlugin(Const("lhs"), Const("alpha_only")), name="alpha-plugin")
    beta = plugs.register(StrategyPlugin(Const("lhs")), name="beta-plugin")
    with pytest.raises(simctl.PluginError) as err:
        plugs.get("strategy", "lhs")
    msg = str(err.value)
    assert "2 plugins provide the strategy 'lhs'" in msg
    assert "'alpha-plugin' (registered in-process)" in msg and "'beta-plugin' (registered in-process)" in msg
    assert f"{DISABLE_ENV}=beta-plugin" in msg
    with pytest.raises(simctl.PluginError, match="alpha-plugin.*beta-plugin"):
        exp.create_ensemble("e", params={"a": [1]}, run_settings=rs, perm_strategy="lhs")
    # both are reported; everything else, their other strategies included, still works
    assert alpha.status == beta.status == "broken"
    assert "strategy 'lhs' is also provided by plugin 'beta-plugin'" in alpha.error
    assert "strategy 'lhs' is also provided by plugin 'alpha-plugin'" in beta.error
    assert alpha.provides == {"strategy": ["lhs", "alpha_only"]}
    assert len(exp.create_ensemble("ok", params={"a": [1]}, run_settings=rs, perm_strategy="alpha_only")) == 2
    assert len(exp.create_ensemble("ok2", params={"a": [1, 2]}, run_settings=rs)) == 2


def test_clash_with_a_builtin_names_its_distribution(plugs):
    plugs.register(StrategyPlugin(Const("random")), name="my-random")
    with pytest.raises(simctl.PluginError) as err:
        plugs.get("strategy", "random")
    msg = str(err.value)
    assert "'random' (distribution simctl-hpc " + simctl.__version__ + ")" in msg
    assert "'my-random' (registered in-process)" in msg


def test_clash_is_resolved_by_disabling_one(clean_env):
    plugs = simctl.make_plugins(disable=["random"])
    plugs.register(StrategyPlugin(Const("random", n=5)), name="my-random")
    assert len(plugs.get("strategy", "random").expand(["a"], [[1, 2]])) == 5


def test_an_unknown_hook_is_refused_at_registration_and_others_still_work(plugs):
    class Typo:
        @simctl.hookimpl
        def simctl_register_strategys(self):  # sic
            return [Const("never")]

    with pytest.raises(simctl.PluginError, match=r"cannot register plugin 'typo': simctl_register_strategys is not a "
                                                 r"simctl hook \(did you mean simctl_register_strategies\?\); the "
                                                 r"hooks are simctl_entity_before_launch, .*"
                                                 r"simctl_register_strategies"):
        plugs.register(Typo(), name="typo")
    assert not plugs.pm.has_plugin("typo")
    assert "typo" not in [r.name for r in plugs.records]
    assert BUILTIN_STRATEGIES <= set(plugs.names("strategy"))
    assert "never" not in plugs.names("strategy")
    plugs.register(StrategyPlugin(Const("fixed")), name="typo")  # the name was not taken
    assert "fixed" in plugs.names("strategy")


def test_wrong_argument_names_are_refused_at_registration(plugs, exp, rs):
    class WrongArgs:
        called = False

        @simctl.hookimpl
        def simctl_entity_created(self, entity, exp):  # spec: (entity, experiment)
            WrongArgs.called = True

    with pytest.raises(simctl.PluginError, match=r"cannot register plugin 'wrong-args': simctl_entity_created\(entity, "
                                                 r"exp\) takes 'exp', which simctl_entity_created does not pass; its "
                                                 r"arguments are \(entity, experiment\)"):
        plugs.register(WrongArgs(), name="wrong-args")
    assert not plugs.pm.has_plugin("wrong-args")
    exp.create_model("m", rs)
    assert WrongArgs.called is False


def test_every_problem_of_a_plugin_is_named_at_once(plugs):
    class Two:
        @simctl.hookimpl
        def simctl_entity_finished(self, entity, stat):  # spec: status
            pass

        @simctl.hookimpl(specname="simctl_entity_started")
        def started(self, entity):
            pass

    with pytest.raises(simctl.PluginError) as info:
        plugs.register(Two(), name="two")
    msg = str(info.value)
    assert "simctl_entity_finished(entity, stat) takes 'stat'" in msg
    assert "(entity, status, experiment)" in msg
    assert "simctl_entity_started is not a simctl hook" in msg


@pytest.mark.parametrize("hook", ["simctl_register_launchers", "simctl_register_backends",
                                  "simctl_register_strategies"])
@pytest.mark.parametrize("option", ["wrapper", "hookwrapper"])
def test_a_wrapper_on_a_registration_hook_is_refused(plugs, hook, option):
    def wrap(self):
        yield
        return []

    wrap.__name__ = hook
    cls = type("Wraps", (), {hook: simctl.hookimpl(**{option: True})(wrap)})
    with pytest.raises(simctl.PluginError, match=rf"cannot register plugin 'wraps': {hook} is marked as a wrapper "
                                                 r"\(wrapper=True or hookwrapper=True\), but a registration hook is "
                                                 r"called once per plugin .* remove the option"):
        plugs.register(cls(), name="wraps")
    assert not plugs.pm.has_plugin("wraps")
    assert BUILTIN_STRATEGIES <= set(plugs.names("strategy"))


def test_a_hook_function_without_the_marker_is_refused(plugs):
    class Unmarked:
        def simctl_register_strategies(self):  # forgot @simctl.hookimpl: would never run
            return [Const("never")]

    with pytest.raises(simctl.PluginError, match=r"simctl_register_strategies is not marked @simctl.hookimpl, so "
                                                 r"simctl would never call it"):
        plugs.register(Unmarked(), name="unmarked")


def test_a_wrapper_on_a_lifecycle_hook_is_accepted(plugs, recorder):
    seen = []

    class Around:
        @simctl.hookimpl(wrapper=True)
        def simctl_entity_created(self, entity):
            result = yield
            seen.append(entity)
            return result

    assert plugs.register(Around(), name="around").status == "ok"
    assert call_hook(plugs.pm, "simctl_entity_created", entity="E", experiment=None) == []
    assert seen == ["E"] and recorder.of("simctl_entity_created") == [{"entity": "E", "experiment": None}]


def test_a_mismatched_entry_point_is_listed_broken_and_others_still_work(tmp_path, clean_env):
    """Discovery isolates what register() refuses: a real entry point (a
    dist-info on sys.path) whose registration hook is a wrapper."""
    site = tmp_path / "site"
    (site / "simctl_wrapping-0.1.dist-info").mkdir(parents=True)
    (site / "simctl_wrapping-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: simctl-wrapping\nVersion: 0.1\n")
    (site / "simctl_wrapping-0.1.dist-info" / "entry_points.txt").write_text(
        "[simctl]\nwrapping = simctl_wrapping\n")
    (site / "simctl_wrapping.py").write_text(
        "import simctl\n\n"
        "@simctl.hookimpl(wrapper=True)\n"
        "def simctl_register_strategies():\n"
        "    return (yield)\n")
    clean_env.syspath_prepend(str(site))
    plugs = simctl.make_plugins()
    record = next(r for r in plugs.records if r.name == "wrapping")
    assert (record.status, record.distribution, record.version) == ("broken", "simctl-wrapping", "0.1")
    assert "simctl_register_strategies is marked as a wrapper" in record.error
    assert not plugs.pm.has_plugin("wrapping")
    assert BUILTIN_STRATEGIES <= set(plugs.names("strategy"))
    assert record.status == "broken"  # building the registries keeps it broken


def test_a_registration_hook_that_raises_marks_only_its_plugin_broken(plugs):
    class Raises:
        @simctl.hookimpl
        def simctl_register_strategies(self):
            raise RuntimeError("no strategies today")

    record = plugs.register(Raises(), name="raises")
    assert BUILTIN_STRATEGIES <= set(plugs.names("strategy"))
    assert record.status == "broken"
    assert "no strategies today" in record.error


@pytest.mark.parametrize("item, why", [
    (object(), "has no 'name'"),
    (type("NoExpand", (), {"name": "noexpand"})(), "without an expand"),
])
def test_registered_items_must_have_a_name_and_for_strategies_expand(plugs, item, why):
    record = plugs.register(StrategyPlugin(item), name="bad-items")
    assert "noexpand" not in plugs.names("strategy")
    assert record.status == "broken" and why in record.error
    assert BUILTIN_STRATEGIES <= set(plugs.names("strategy"))


def test_unavailable_items_are_reported_with_their_reason(plugs):
    class NeedsLib(Const):
        def unavailable_reason(self):
            return "install fancylib"

    class CheckFails(Const):
        def unavailable_reason(self):
            raise ImportError("fancylib is half-installed")

    record = plugs.register(StrategyPlugin(NeedsLib("fancy"), CheckFails("fancier")), name="fancy-plugin")
    assert set(plugs.names("strategy")) >= {"fancy", "fancier"}
    assert record.status == "unavailable"
    assert record.unavailable["fancy"] == "install fancylib"
    assert "half-installed" in record.unavailable["fancier"]


def test_statuses_are_recomputed_when_registries_rebuild(plugs):
    state = {"fail": True}

    class Flaky:
        @simctl.hookimpl
        def simctl_register_strategies(self):
            if state["fail"]:
                raise RuntimeError("flaky")
            return [Const("flaky")]

    record = plugs.register(Flaky(), name="flaky")
    plugs.names("strategy")
    assert record.status == "broken"
    state["fail"] = False
    plugs.register(StrategyPlugin(Const("other")), name="other")  # forces a rebuild
    assert "flaky" in plugs.names("strategy")
    assert record.status == "ok" and record.error is None
    assert Counter(n for r in plugs.records for n in r.provides.get("strategy", []))["flaky"] == 1


# -- the blocklist ---------------------------------------------------------------------------


def test_disable_env_var_disables_plugins_by_entry_point_name(clean_env):
    clean_env.setenv(DISABLE_ENV, " random, step ,")
    plugs = simctl.make_plugins()
    assert set(plugs.names("strategy")) & BUILTIN_STRATEGIES == {"all_perm"}
    by_name = {r.name: r for r in plugs.records}
    for name in ("random", "step"):
        assert by_name[name].status == "disabled"
        assert DISABLE_ENV in by_name[name].error
        assert not plugs.pm.has_plugin(name)
    with pytest.raises(simctl.ConfigError, match=r"strategy 'random': plugin 'random' .* is disabled by "
                                                 r"SIMCTL_DISABLE_PLUGINS.*'all_perm'"):
        plugs.get("strategy", "random")


def test_disable_argument_adds_to_the_env_var(clean_env):
    clean_env.setenv(DISABLE_ENV, "step")
    plugs = simctl.make_plugins(disable=["random"])
    assert not {"random", "step"} & set(plugs.names("strategy"))


# -- lifecycle hooks are called one by one ----------------------------------------------------


def test_call_hook_runs_every_implementation_even_when_one_raises(plugs, recorder):
    class Raises:
        @simctl.hookimpl
        def simctl_entity_created(self, entity):
            raise ValueError("boom")

    plugs.register(Raises(), name="raises")
    failures = call_hook(plugs.pm, "simctl_entity_created", entity="E", experiment=None)
    assert [(name, str(exc)) for name, exc in failures] == [("raises", "boom")]
    assert recorder.of("simctl_entity_created") == [{"entity": "E", "experiment": None}]


# -- real external plugins, discovered through their entry points -------------------------------


def test_external_plugins_load_or_are_reported_and_the_rest_still_work(external_plugins):
    plugs = simctl.make_plugins()
    by_name = {r.name: r for r in plugs.records}
    assert BUILTIN_STRATEGIES | {"lhs"} <= set(plugs.names("strategy"))

    lhs = by_name["lhs"]
    assert (lhs.status, lhs.distribution, lhs.version, lhs.builtin) == ("ok", "simctl-lhs", "0.1.0", False)
    assert lhs.provides == {"strategy": ["lhs"]}

    broken = by_name["broken"]
    assert (broken.status, broken.distribution, broken.version) == ("broken", "simctl-broken-plugin", "6.6.6")
    assert "RuntimeError" in broken.error and "exploded on import" in broken.error

    typo = by_name["typo_hook"]
    assert (typo.status, typo.distribution) == ("broken", "simctl-mismatched-plugin")
    assert "simctl_register_strategys" in typo.error
    assert "never" not in plugs.names("strategy")

    wrong = by_name["wrong_args"]
    assert wrong.status == "broken" and "'exp'" in wrong.error
    assert "its arguments are (entity, experiment)" in wrong.error


def test_external_plugins_can_be_disabled_by_entry_point_name(external_plugins, clean_env):
    clean_env.setenv(DISABLE_ENV, "broken,lhs")
    plugs = simctl.make_plugins()
    by_name = {r.name: r for r in plugs.records}
    assert by_name["broken"].status == "disabled" and by_name["lhs"].status == "disabled"
    assert "simctl_broken_plugin" not in sys.modules
    assert "lhs" not in plugs.names("strategy")
    assert by_name["typo_hook"].status == "broken"  # not on the list: still loaded and reported


def test_external_strategy_is_used_by_name(external_plugins, tmp_path):
    plugs = simctl.make_plugins()
    exp = simctl.Experiment("lhs-exp", exp_path=str(tmp_path / "e"), plugins=plugs)
    try:
        rs = exp.create_run_settings("echo")
        params = {"visc": [0.1, 0.2, 0.3, 0.4], "inflow": list(range(80)), "mesh": ["coarse", "fine"]}
        ens = exp.create_ensemble("sweep", params=params, run_settings=rs, perm_strategy="lhs",
                                  n_models=8, seed=42)
        members = [m.params for m in ens]
        assert len(members) == 8 and [m.name for m in ens] == [f"sweep_{i}" for i in range(8)]
        # Latin hypercube: every stratum of every axis holds exactly one member
        assert Counter(p["visc"] for p in members) == {v: 2 for v in params["visc"]}
        assert Counter(p["mesh"] for p in members) == {"coarse": 4, "fine": 4}
        strata = sorted(int(params["inflow"].index(p["inflow"])  * 8 // 80) for p in members)
        assert strata == list(range(8))
        again = exp.create_ensemble("again", params=params, run_settings=rs, perm_strategy="lhs",
                                    n_models=8, seed=42)
        assert [m.params for m in again] == members
        with pytest.raises(simctl.ConfigError, match="'lhs' needs n_models"):
            exp.create_ensemble("no-n", params=params, run_settings=rs, perm_strategy="lhs")
        exp.generate(ens)
        assert sorted(p.name for p in (tmp_path / "e" / "sweep").iterdir()) == [
            "simctl-params.json", *(f"sweep_{i}" for i in range(8))]
    finally:
        exp.launcher.close()


def test_a_real_package_clashing_with_a_builtin(clashing_plugin, tmp_path):
    plugs = simctl.make_plugins()
    assert {"random", "reverse"} <= set(plugs.names("strategy"))  # builds the registries
    by_name = {r.name: r for r in plugs.records}
    mine, builtin = by_name["my_random"], by_name["random"]
    assert (mine.distribution, mine.version, mine.status) == ("simctl-clash-plugin", "2.0.0", "broken")
    assert builtin.status == "broken"
    assert f"also provided by plugin 'random' (distribution simctl-hpc {simctl.__version__})" in mine.error
    assert "also provided by plugin 'my_random' (distribution simctl-clash-plugin 2.0.0)" in builtin.error
    exp = simctl.Experiment("clash", exp_path=str(tmp_path / "e"), plugins=plugs)
    try:
        rs = exp.create_run_settings("echo")
        with pytest.raises(simctl.PluginError, match=r"simctl-clash-plugin 2\.0\.0.*SIMCTL_DISABLE_PLUGINS"):
            exp.create_ensemble("r", params={"a": [1, 2]}, run_settings=rs, perm_strategy="random", n_models=1)
        rev = exp.create_ensemble("rev", params={"a": [1, 2]}, run_settings=rs, perm_strategy="reverse")
        assert [m.params["a"] for m in rev] == [2, 1]
    finally:
        exp.launcher.close()


def test_disabling_one_side_of_a_clash(clashing_plugin, clean_env):
    clean_env.setenv(DISABLE_ENV, "my_random")
    plugs = simctl.make_plugins()
    assert type(plugs.get("strategy", "random")).__module__ == "simctl.plugins.strategies.random"
    statuses = {r.name: r.status for r in plugs.records}
    assert (statuses["random"], statuses["my_random"]) == ("ok", "disabled")


# -- in-process plugins reach the store's inference workers by module ---------------------------


class BackendPlugin:
    """A backend plugin whose class a worker can call with no arguments."""

    @simctl.hookimpl
    def simctl_register_backends(self):
        return []


class NeedsArgs:
    def __init__(self, what):
        self.what = what

    @simctl.hookimpl
    def simctl_register_backends(self):
        return []


HELD = NeedsArgs("held by the module")


@pytest.fixture
def affine(clean_env):
    """The module affine_backend, importable here (not installed: no entry point)."""
    clean_env.syspath_prepend(str(WORKER_PLUGINS))
    import affine_backend

    return affine_backend


def test_worker_args_name_each_in_process_backend_plugin_by_module(plugs, affine, recorder):
    plugs.register(affine, name="aff-module")
    plugs.register(affine.Plugin(), name="aff-object")
    plugs.register(HELD, name="held")
    plugs.register(BackendPlugin(), name="made")
    tests = str(Path(__file__).resolve().parent)
    assert plugs.worker_args() == [
        "--plugin", "aff-module=affine_backend", "--plugin", "aff-object=affine_backend:Plugin()",
        "--plugin", f"held={__name__}:HELD", "--plugin", f"made={__name__}:BackendPlugin()",
        "--plugin-path", str(WORKER_PLUGINS), "--plugin-path", tests]
    # the recorder (lifecycle hooks only) runs in the driver alone: not passed on


def test_worker_args_pass_on_what_is_disabled_and_nothing_else_by_default(clean_env):
    assert simctl.make_plugins().worker_args() == []
    assert simctl.make_plugins(disable=["random", "nosuch"]).worker_args() == ["--disable-plugin", "random"]


def test_a_plugin_from_an_installed_module_passes_no_path(plugs):
    from simctl.plugins.strategies import step

    assert source_of(step, "s") == Source("s", "simctl.plugins.strategies.step")  # site-packages or the src tree
    assert source_of(Const, "c") == Source("c", __name__, "Const", path=str(Path(__file__).resolve().parent))


def test_a_backend_plugin_a_worker_could_not_import_is_refused(plugs):
    class Local:
        @simctl.hookimpl
        def simctl_register_backends(self):
            return []

    with pytest.raises(simctl.PluginError, match=r"cannot register plugin 'mine-local': it implements "
                                                 r"simctl_register_backends, which runs in the store's inference "
                                                 r"workers, and a worker loads an in-process plugin by importing it, "
                                                 r"but it is an object of class .*Local, which is not an attribute "
                                                 r"of its module test_plugins \(defined inside a function\?\)"):
        plugs.register(Local(), name="mine-local")
    with pytest.raises(simctl.PluginError, match=r"test_plugins.NeedsArgs, which no attribute of that module holds, "
                                                 r"and that class cannot be called without arguments"):
        plugs.register(NeedsArgs("not held"), name="args")
    assert not plugs.pm.has_plugin("mine-local") and not plugs.pm.has_plugin("args")
    assert plugs.worker_args() == []

    class LifecycleOnly:  # runs in the driver alone: nothing to import elsewhere
        @simctl.hookimpl
        def simctl_entity_created(self, entity):
            pass

    assert plugs.register(LifecycleOnly(), name="lifecycle").status == "ok"


@pytest.mark.slow
def test_a_backend_plugin_defined_in_main_is_refused():
    code = ("import simctl\n"
            "class Mine:\n"
            "    @simctl.hookimpl\n"
            "    def simctl_register_backends(self):\n"
            "        return []\n"
            "try:\n"
            "    simctl.make_plugins().register(Mine(), name='mine')\n"
            "except simctl.PluginError as exc:\n"
            "    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "cannot register plugin 'mine': it implements simctl_register_backends, which runs in the store's inference "
        "workers, and a worker loads an in-process plugin by importing it, but it is defined in __main__ (the "
        "script that was run), which another process cannot import: define it in a module of its own (a .py file "
        "beside the script) and import it from there")


@pytest.mark.parametrize("spec", ["noname", "=mod", "name=", "name=mod:", "name=mod:()"])
def test_a_bad_plugin_spec_says_the_form(spec):
    with pytest.raises(ValueError, match=r"name=module\[:attribute\[\(\)\]\], such as 'mine=my_backends:Plugin\(\)'"):
        Source.parse(spec)


@pytest.mark.slow
def test_a_worker_registry_is_its_entry_points_plus_the_plugins_given(clean_env):
    """What a worker process builds, in a process of its own: the plugin's
    module is found through --plugin-path alone (not on PYTHONPATH here)."""
    code = ("import json, sys\n"
            "from simctl.core.plugins import worker_plugins\n"
            "p = worker_plugins(sys.argv[1:4], [sys.argv[4]], ['random'])\n"
            "print(json.dumps({'backends': p.names('backend'), 'strategies': p.names('strategy'),\n"
            "                  'broken': {r.name: r.error for r in p.records if r.status == 'broken'},\n"
            "                  'disabled': [r.name for r in p.records if r.status == 'disabled'],\n"
            "                  'affine': p.get('backend', 'AFFINE').__module__}))\n")
    specs = ["aff=affine_backend:Plugin()", "gone=no_such_module_here", "bad=affine_backend:Missing"]
    proc = subprocess.run([sys.executable, "-c", code, *specs, str(WORKER_PLUGINS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import json

    got = json.loads(proc.stdout)
    assert "AFFINE" in got["backends"] and {"ONNX", "TORCH"} <= set(got["backends"])
    assert got["affine"] == "affine_backend"
    assert "random" not in got["strategies"] and got["disabled"] == ["random"]
    assert got["broken"] == {
        "gone": "gone=no_such_module_here: ModuleNotFoundError: No module named 'no_such_module_here'",
        "bad": "bad=affine_backend:Missing: AttributeError: module 'affine_backend' has no attribute 'Missing'"}
