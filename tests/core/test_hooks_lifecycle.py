"""Entity lifecycle hooks fire as documented: created, before_launch (which may
adjust the step), status_changed with old and new, finished once per launch."""

from __future__ import annotations

import pytest
from _lifecycle_helpers import (
    RecorderPlugin,
    code_settings,
    make_exp,
    recorder_of,
    wait_until,
)

import simctl
from simctl import Status
from simctl.core import hookspecs


def test_created_fires_for_models_ensembles_and_members(tmp_path):
    rec = RecorderPlugin()
    exp = make_exp(tmp_path, recorder=rec)
    model = exp.create_model("m", exp.create_run_settings("true"))
    ens = exp.create_ensemble("e", params={"a": [1, 2]}, run_settings=exp.create_run_settings("true"))
    assert rec.created == [model, ens]  # members are made lazily
    members = ens.models
    assert rec.created == [model, ens, *members]


@pytest.mark.slow
def test_status_changed_carries_old_and_new_in_order(tmp_path):
    exp = make_exp(tmp_path)
    rec = recorder_of(exp)
    model = exp.create_model("s", code_settings(exp, "import time; time.sleep(0.4)"), path=str(tmp_path))
    exp.start(model)
    assert rec.history("s") == [Status.NEW, Status.QUEUED, Status.RUNNING, Status.COMPLETED]
    changes = [(o, n) for name, o, n in rec.changes if name == "s"]
    for (_, prev_new), (next_old, _) in zip(changes, changes[1:]):
        assert prev_new == next_old  # each change starts where the last one ended
    assert changes[-1][1].returncode == 0


@pytest.mark.slow
def test_failed_status_change_carries_code_and_reason(tmp_path):
    exp = make_exp(tmp_path)
    rec = recorder_of(exp)
    model = exp.create_model("f", exp.create_run_settings("sh", exe_args=["-c", "exit 9"]), path=str(tmp_path))
    exp.start(model)
    last = [n for name, _, n in rec.changes if name == "f"][-1]
    assert last.status is Status.FAILED and last.returncode == 9 and "9" in last.reason


@pytest.mark.slow
def test_finished_fires_once_per_launch(tmp_path):
    exp = make_exp(tmp_path)
    rec = recorder_of(exp)
    ens = exp.create_ensemble("r", replicas=4, run_settings=exp.create_run_settings("true"), path=str(tmp_path))
    exp.start(ens)
    exp.start(ens)  # a second launch of the same members
    names = [n for n, _ in rec.finished]
    assert sorted(names) == sorted([m.name for m in ens] * 2)
    assert all(s.status is Status.COMPLETED for _, s in rec.finished)
    # finished comes after the change to the final status
    for name in ("r_0", "r_3"):
        assert rec.history(name)[-1] is Status.COMPLETED


@pytest.mark.slow
def test_finished_fires_for_cancelled_and_never_started(tmp_path):
    exp = make_exp(tmp_path, launcher_options={"max_concurrent": 1})
    rec = recorder_of(exp)
    ens = exp.create_ensemble("c", replicas=2, run_settings=exp.create_run_settings("sleep", exe_args="30"),
                              path=str(tmp_path))
    exp.start(ens, block=False)
    wait_until(lambda: exp.get_status(ens)[0] is Status.RUNNING, "first member RUNNING")
    exp.stop(ens)
    assert sorted((n, s.status) for n, s in rec.finished) == [
        ("c_0", Status.CANCELLED), ("c_1", Status.NEVER_STARTED)]


def test_finished_fires_for_a_model_that_could_not_start(tmp_path):
    exp = make_exp(tmp_path)
    rec = recorder_of(exp)
    model = exp.create_model("ghost", exp.create_run_settings("simctl-no-such-exe"), path=str(tmp_path))
    exp.start(model)
    assert [(n, s.status) for n, s in rec.finished] == [("ghost", Status.FAILED)]


class EnvSetter:
    @simctl.hookimpl
    def simctl_entity_before_launch(self, entity, step, experiment):
        step.env["HOOK_SET"] = f"set-for-{entity.name}"
        step.argv.append("--from-hook")


@pytest.mark.slow
def test_before_launch_can_adjust_the_step_and_the_process_sees_it(tmp_path):
    exp = make_exp(tmp_path)
    exp.plugins.register(EnvSetter(), name="envsetter")
    rs = code_settings(exp, "import os, sys; print(os.environ.get('HOOK_SET'), sys.argv[1:])")
    ens = exp.create_ensemble("h", replicas=2, run_settings=rs, path=str(tmp_path))
    exp.start(ens)
    # each member runs in <ensemble path>/<member> (SmartSim's place, issue 19)
    assert (tmp_path / "h_0" / "h_0.out").read_text() == "set-for-h_0 ['--from-hook']\n"
    assert (tmp_path / "h_1" / "h_1.out").read_text() == "set-for-h_1 ['--from-hook']\n"
    before = recorder_of(exp).before
    assert [n for n, _ in before] == ["h_0", "h_1"]
    assert all(isinstance(step, simctl.ProcessStep) and step.cwd == str(tmp_path / n) for n, step in before)


@pytest.mark.slow
def test_before_launch_sees_the_prepared_step(tmp_path):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings("echo", exe_args=["hi"], env_vars={"A": "1"})
    model = exp.create_model("p", rs, path=str(tmp_path), enable_key_prefixing=True)
    exp.start(model)
    [(name, step)] = recorder_of(exp).before
    assert name == "p"
    assert step.argv == ["echo", "hi"]
    assert step.env["A"] == "1" and step.env["SSKEYOUT"] == "p"
    assert step.out == str(tmp_path / "p.out") and step.err == str(tmp_path / "p.err")
    assert step.job_id  # the launcher filled it in


def test_every_lifecycle_hook_is_documented():
    for name in ("simctl_entity_created", "simctl_entity_before_launch", "simctl_entity_status_changed",
                 "simctl_entity_finished"):
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__.strip()) > 40
