"""The launch plan (issue 7): the entity protocol, pure planning, hooks through
pluggy, entities that run until stopped, per-node singletons, launcher
options, library logging manners. Real processes on the local launcher; the
batch parts are in test_launch_plan_slurm.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _lifecycle_helpers import PY, gone, make_exp, wait_until, write_script

import simctl
from simctl import Status
from simctl.core import controller as controller_module

#: writes its pid, then the ready file named in argv after a short while, then waits to be stopped
SERVER = """
    import os, sys, time
    open("server.pid", "w").write(str(os.getpid()))
    time.sleep(0.3)
    if sys.argv[1] != "never":
        open(sys.argv[1], "w").close()
    if sys.argv[2:] == ["die"]:
        print("server: giving up, port taken", file=sys.stderr)
        sys.exit(3)
    while True:
        time.sleep(1)
"""


class Sleeper(simctl.Entity):
    """A third kind of entity: runs until stopped, ready once it wrote its
    ready file, and hands an address and a token to later entities."""

    runs_until_stopped = True

    def __init__(self, name: str, where: Path, mode: str = "ok", ready_timeout: float = 60.0) -> None:
        self.name, self.where, self.mode, self.ready_timeout = name, where, mode, ready_timeout
        self.script = write_script(where / "server.py", SERVER)

    def job_keys(self) -> list[str]:
        return [self.name]

    def plan(self, ctx: simctl.PlanContext) -> list[simctl.Launch]:
        ready = str(self.where / "ready")
        arg = "never" if self.mode == "never" else ready
        rs = ctx.launcher.create_run_settings(exe=PY)
        ctx.check(rs, None)
        return [simctl.ProcessStep(name=self.name, argv=[PY, str(self.script), arg]
                                   + (["die"] if self.mode == "die" else []),
                                   cwd=str(self.where), out=str(self.where / "server.out"),
                                   err=str(self.where / "server.err"), run_settings=rs, entity=self,
                                   ready_file=ready)]

    def handoff(self, steps: Any) -> simctl.Handoff:
        return simctl.Handoff(env={"SLEEPER_ADDR": "127.0.0.1:7777"}, secret_env={"SLEEPER_TOKEN": "s3cret"})


REPORT_ENV = """
    import json, os, sys
    print(json.dumps({k: os.environ.get(k) for k in ("SLEEPER_ADDR", "SLEEPER_TOKEN", "HOOK")}))
    print(json.dumps(sys.argv[1:]))
"""


def _report(exp: simctl.Experiment, tmp_path: Path, name: str) -> simctl.Model:
    prog = write_script(tmp_path / "report.py", REPORT_ENV)
    return exp.create_model(name, exp.create_run_settings(exe=PY, exe_args=[str(prog)]), path=str(tmp_path))


@pytest.mark.slow
def test_an_entity_that_runs_until_stopped_is_ready_hands_off_and_is_left_running(tmp_path):
    exp = make_exp(tmp_path)
    where = tmp_path / "srv"
    where.mkdir()
    server = Sleeper("store", where)
    exp.start(server)  # returns once ready; block=True does not wait for it to end
    assert (where / "ready").exists()
    assert exp.get_status(server) == [Status.RUNNING]
    pid = int((where / "server.pid").read_text())

    model = _report(exp, tmp_path, "sim")
    exp.start(model, block=True)  # waits for the model, not for the store
    assert exp.get_status(model) == [Status.COMPLETED]
    assert exp.get_status(server) == [Status.RUNNING] and not gone(pid)
    seen = json.loads((tmp_path / "sim.out").read_text().splitlines()[0])
    assert seen["SLEEPER_ADDR"] == "127.0.0.1:7777" and seen["SLEEPER_TOKEN"] == "s3cret"
    # the secret is handed over through the environment, never shown
    assert "s3cret" not in exp.preview(model, show=False) and "SLEEPER_TOKEN=***" in exp.preview(model, show=False)
    (rec,) = [r for r in exp.summary_data() if r.name == "store"]
    assert rec.entity_type == "Sleeper" and rec.until_stopped

    exp.stop(server)
    assert exp.get_status(server) == [Status.CANCELLED]
    wait_until(lambda: gone(pid), "the store to be gone")
    # a model started after the store stopped gets nothing from it
    later = _report(exp, tmp_path, "later")
    exp.start(later)
    assert json.loads((tmp_path / "later.out").read_text().splitlines()[0])["SLEEPER_ADDR"] is None


@pytest.mark.slow
def test_an_entity_that_dies_before_it_is_ready_is_a_clear_error(tmp_path):
    exp = make_exp(tmp_path)
    where = tmp_path / "srv"
    where.mkdir()
    server = Sleeper("store", where, mode="die")
    (where / "ready").unlink(missing_ok=True)
    with pytest.raises(simctl.LaunchError, match=r"(?s)'store' did not become ready: store ended Failed.*"
                                                 r"port taken") as err:
        server.mode = "die"
        server.plan = _never_ready(server)  # type: ignore[method-assign]
        exp.start(server)
    assert "server.err" in str(err.value)
    assert exp.get_status(server) == [Status.FAILED]


def _never_ready(server: Sleeper):
    plan = Sleeper.plan

    def planned(ctx):
        steps = plan(server, ctx)
        steps[0].ready_file = str(server.where / "not-this")  # it never writes this one
        return steps

    return planned


@pytest.mark.slow
def test_an_entity_not_ready_in_time_is_stopped_and_reported(tmp_path):
    exp = make_exp(tmp_path)
    where = tmp_path / "srv"
    where.mkdir()
    server = Sleeper("store", where, mode="never", ready_timeout=0.5)
    with pytest.raises(simctl.LaunchError, match=r"'store' was not ready after 0.5 s; it was stopped"):
        exp.start(server)
    assert exp.get_status(server) == [Status.CANCELLED]
    wait_until(lambda: gone(int((where / "server.pid").read_text())), "the store to be gone")


@pytest.mark.slow
def test_readiness_is_noticed_by_the_file_watcher_and_on_ready_runs_once(tmp_path, monkeypatch):
    # no fallback re-check during the test: only the ready file's appearance, seen by the
    # experiment's one file watcher, can end the wait (a poll loop of its own would not be needed)
    monkeypatch.setattr(controller_module, "READY_FALLBACK", 3600.0)
    exp = make_exp(tmp_path)
    where = tmp_path / "srv"
    where.mkdir()
    server = Sleeper("store", where)
    calls = []
    server.on_ready = lambda steps: calls.append(([s.key for s in steps], (where / "ready").exists()))
    exp.start(server)
    assert calls == [(["store"], True)]
    assert exp.controller.watcher is exp.launcher.watcher  # one watcher per experiment
    assert exp.controller.watcher.watching() == []  # the ready file is no longer watched
    exp.stop(server)
    assert exp.get_status(server) == [Status.CANCELLED]


@pytest.mark.slow
def test_an_on_ready_that_fails_stops_the_entity_and_says_why(tmp_path):
    exp = make_exp(tmp_path)
    where = tmp_path / "srv"
    where.mkdir()
    server = Sleeper("store", where)

    def refuse(steps):
        raise RuntimeError("the cluster would not form")

    server.on_ready = refuse
    with pytest.raises(simctl.LaunchError, match=r"'store' did not become ready: the cluster would not form; "
                                                 r"it was stopped"):
        exp.start(server)
    assert exp.get_status(server) == [Status.CANCELLED]
    assert "store" not in exp.controller.handoffs
    wait_until(lambda: gone(int((where / "server.pid").read_text())), "the store to be gone")


@pytest.mark.slow
def test_block_waits_for_models_started_earlier_and_stop_without_arguments_stops_all(tmp_path):
    exp = make_exp(tmp_path)
    slow = exp.create_model("slow", exp.create_run_settings(exe=PY, exe_args=["-c", "import time; time.sleep(1)"]),
                            path=str(tmp_path))
    quick = exp.create_model("quick", exp.create_run_settings(exe="true"), path=str(tmp_path))
    exp.start(slow, block=False)
    exp.start(quick, block=True)  # the documents: blocks until all jobs (but stores) are finished
    assert exp.get_status(slow, quick) == [Status.COMPLETED, Status.COMPLETED]

    a = exp.create_model("a", exp.create_run_settings(exe="sleep", exe_args="60"), path=str(tmp_path))
    b = exp.create_model("b", exp.create_run_settings(exe="sleep", exe_args="60"), path=str(tmp_path))
    exp.start(a, b, block=False)
    exp.stop()  # everything the experiment started
    assert exp.get_status(a, b) == [Status.CANCELLED, Status.CANCELLED]


# -- planning is pure ----------------------------------------------------------------------------------------


def test_planning_writes_nothing_and_starts_nothing(tmp_path, snapshot):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings(exe="true")
    ens = exp.create_ensemble("ens", params={"x": [1, 2, 3]}, run_settings=rs)
    model = exp.create_model("m", rs)
    before = snapshot(tmp_path)
    plan = simctl.make_plan([ens, model], exp.controller.context())
    assert snapshot(tmp_path) == before
    assert [s.key for s in plan.steps] == ["ens/ens_0", "ens/ens_1", "ens/ens_2", "m"]
    assert all(s.job_id is None for s in plan.steps) and plan.owner["ens/ens_1"] is ens
    assert plan.steps[1].argv == ["true"] and plan.steps[1].entity is ens["ens_1"]
    with pytest.raises(simctl.ConfigError, match="'m' given twice"):
        simctl.make_plan([model, model], exp.controller.context())


@pytest.mark.slow
def test_a_model_and_a_member_with_the_same_name_are_different_jobs(tmp_path):
    exp = make_exp(tmp_path)
    ens = exp.create_ensemble("grp", replicas=1, run_settings=exp.create_run_settings(exe="true"),
                              path=str(tmp_path))
    model = exp.create_model("grp_0", exp.create_run_settings(exe="false"), path=str(tmp_path / "m"))
    (tmp_path / "m").mkdir()
    exp.start(ens, model)
    assert exp.get_status(ens) == [Status.COMPLETED]
    assert exp.get_status(model) == [Status.FAILED]  # it used to share the member's status


# -- hooks through pluggy ----------------------------------------------------------------------------------------


class Order:
    def __init__(self) -> None:
        self.calls: list[str] = []


def test_wrapper_and_tryfirst_hooks_run(tmp_path):
    seen = Order()

    class Wrapper:
        @simctl.hookimpl(wrapper=True)
        def simctl_entity_before_launch(self, entity, step, experiment):
            seen.calls.append(f"wrapper in {step.key}")
            result = yield
            step.env["HOOK"] = "set by the wrapper after the others"
            seen.calls.append(f"wrapper out {step.key}")
            return result

    class Late:
        @simctl.hookimpl(trylast=True)
        def simctl_entity_before_launch(self, entity, step, experiment):
            seen.calls.append("late")

    class Early:
        @simctl.hookimpl(tryfirst=True)
        def simctl_entity_before_launch(self, entity, step, experiment):
            seen.calls.append("early")
            raise RuntimeError("early hook broke")

    exp = make_exp(tmp_path)
    for name, plugin in (("wrapper", Wrapper()), ("late", Late()), ("early", Early())):
        assert exp.plugins.register(plugin, name=name).status == "ok"
    model = _report(exp, tmp_path, "m")
    exp.start(model)
    # the wrapper ran around both; tryfirst before trylast; the raising one did not stop the others
    assert seen.calls == ["wrapper in m", "early", "late", "wrapper out m"]
    assert exp.get_status(model) == [Status.FAILED]  # a failing before_launch fails the step
    assert any("early hook broke" in e for e in exp.hook_errors)


@pytest.mark.slow
def test_a_before_launch_change_reaches_the_command_and_preview(tmp_path):
    class AddArg:
        @simctl.hookimpl
        def simctl_entity_before_launch(self, entity, step, experiment):
            step.argv.append("--from-hook")
            step.env["HOOK"] = f"for {entity.name}"

    exp = make_exp(tmp_path)
    exp.plugins.register(AddArg(), name="addarg")
    model = _report(exp, tmp_path, "m")
    exp.start(model)
    env, argv = (json.loads(x) for x in (tmp_path / "m.out").read_text().splitlines())
    assert env["HOOK"] == "for m" and argv == ["--from-hook"]


# -- per-node singletons ---------------------------------------------------------------------------------------------

from _script_helpers import PER_NODE_HELPER as HELPER  # noqa: E402

RANK = """
    import os, sys
    log = open(sys.argv[1]).read()
    print("helper-started" if log.startswith("start ") else "helper-missing", os.environ.get("SIMCTL_PERNODE_KEY"))
"""


def per_node_hook(helper: Path, log: Path) -> object:
    class PerNode:
        @simctl.hookimpl
        def simctl_entity_before_launch(self, entity, step, experiment):
            step.per_node = [PY, str(helper), str(log)]

    return PerNode()


@pytest.mark.slow
def test_a_per_node_command_runs_before_the_step_and_is_stopped_after_it(tmp_path):
    helper, rank = write_script(tmp_path / "helper.py", HELPER), write_script(tmp_path / "rank.py", RANK)
    log = tmp_path / "helper.log"
    exp = make_exp(tmp_path)
    exp.plugins.register(per_node_hook(helper, log), name="pernode")
    model = exp.create_model("app", exp.create_run_settings(exe=PY, exe_args=[str(rank), str(log)]),
                             path=str(tmp_path))
    assert "simctl.core.pernode" in exp.preview(model, show=False)
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED]
    assert (tmp_path / "app.out").read_text().startswith("helper-started")
    lines = log.read_text().splitlines()
    assert len([ln for ln in lines if ln.startswith("start")]) == 1 and lines[-1] == "stopped"


# -- launcher options, logging -----------------------------------------------------------------------------------------


def test_a_misspelt_launcher_option_lists_the_accepted_ones(tmp_path):
    with pytest.raises(simctl.ConfigError, match=r"no option\(s\) 'max_concurent' \(did you mean 'max_concurrent'\?\)"
                                                 r".*accepted: 'max_concurrent', 'stop_grace'"):
        simctl.Experiment("x", exp_path=str(tmp_path / "x"), launcher_options={"max_concurent": 2})
    with pytest.raises(simctl.ConfigError, match="'pbs_flavor'"):
        simctl.Experiment("x", exp_path=str(tmp_path / "x"), launcher="slurm", launcher_options={"pbs_flavor": "pro"})


@pytest.mark.slow
def test_importing_simctl_leaves_the_users_logging_alone():
    code = ("import logging, simctl; lg = logging.getLogger('simctl'); "
            "print(lg.propagate, [type(h).__name__ for h in lg.handlers], logging.getLogger().handlers)")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "['_Unheard']", "[]"]
    # with no logging set up, simctl's warnings are Python warnings (not lost), and can be silenced
    code = ("import logging, warnings, simctl; logging.getLogger('simctl.x').warning('heard %d', 1); "
            "warnings.filterwarnings('ignore', category=simctl.SimctlWarning); "
            "logging.getLogger('simctl.x').warning('silenced')")
    err = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "SimctlWarning: warning: heard 1" in err and "silenced" not in err
    # the user's own setup receives simctl's records
    code = ("import logging, simctl; logging.basicConfig(level=logging.INFO, format='%(name)s:%(message)s'); "
            "simctl.Experiment('x', exp_path='/tmp/simctl-never-made', launcher='auto')")
    err = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "simctl.experiment:launcher='auto' picked" in err
