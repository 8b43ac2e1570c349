"""simctl used carelessly: wrong types, calls in the wrong order, odd names and
paths, on every public function and method.

``BAD`` is the table of findings that must be a :class:`simctl.ConfigError`
naming the argument and showing what it got, raised before anything is
written (the whole test directory is compared before and after). ``GOOD``
holds valid-but-unusual input that must work. The CLI cases follow. Each row
of ``BAD`` and ``GOOD`` and the CLI usage errors failed on the code before its
fix (a TypeError, AttributeError, KeyError or ValueError, or no error and a
wrong result or a write); ``STILL_GOOD`` and the tests marked as guards passed
before and check that the new checks refuse nothing valid. Real processes, local launcher;
the scheduler launchers only make settings and previews (nothing submitted).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import simctl
from simctl import ConfigError, Status
from simctl.cli import main as cli

NAN, INF = float("nan"), float("inf")


class Ctx:
    """An experiment on the local launcher with a model, an ensemble and a
    file to configure, in a fresh directory that is also the working
    directory; ``on(launcher)`` gives an experiment on a scheduler launcher
    (for settings and previews only)."""

    def __init__(self, tmp: Path, plugs: simctl.Plugins):
        self.tmp, self.plugs = tmp, plugs
        (tmp / "in.txt").write_text("a = ;a;\n")
        (tmp / "a_file").write_text("not a directory\n")
        self.exp = simctl.Experiment("careless", exp_path=str(tmp / "exp"), plugins=plugs)
        self.rs = self.exp.create_run_settings("true")
        self.ens = self.exp.create_ensemble("ens", params={"a": [1, 2]}, run_settings=self.rs)
        self.model = self.exp.create_model("m", self.rs, params={"a": 5})
        self._others: dict[str, simctl.Experiment] = {}

    def on(self, launcher: str) -> simctl.Experiment:
        if launcher not in self._others:
            self._others[launcher] = simctl.Experiment(launcher, exp_path=str(self.tmp / launcher),
                                                       launcher=launcher, plugins=self.plugs)
        return self._others[launcher]

    def run_settings(self, launcher: str) -> Any:
        run_command = {"slurm": "srun", "pbs": "aprun", "lsf": "jsrun"}[launcher]
        return self.on(launcher).create_run_settings("true", run_command=run_command)

    def close(self) -> None:
        for e in (self.exp, *self._others.values()):
            e.close()


@pytest.fixture
def ctx(tmp_path, plugs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = Ctx(tmp_path, plugs)
    yield c
    c.close()


def _tree(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = "<dir>" if p.is_dir() else p.read_bytes()
    return out


def _of_other_ensemble(c: Ctx) -> None:
    other = c.exp.create_ensemble("other", replicas=1, run_settings=c.rs)
    c.ens.add_model(other["other_0"])


def _strategy(result: Any) -> Callable[..., Any]:
    return lambda names, values, n_models: result


#: (call, what the message must say: the argument and the value it got)
BAD: dict[str, tuple[Callable[[Ctx], Any], str]] = {
    # -- Experiment ---------------------------------------------------------------------------
    "Experiment exp_path ''": (lambda c: simctl.Experiment("x", exp_path=""), r"exp_path must be .*got '' \(str\)"),
    "Experiment exp_path NUL": (lambda c: simctl.Experiment("x", exp_path="a\0b"), r"exp_path .*NUL.*'a\\x00b'"),
    "Experiment launcher_options int key": (lambda c: simctl.Experiment("x", launcher_options={1: 2}),
                                            r"launcher_options: option name 1 \(int\) must be a str"),
    "Experiment plugins str": (lambda c: simctl.Experiment("x", plugins="local"),
                               r"plugins must be what simctl.make_plugins\(\) returns.*'local' \(str\)"),
    # -- create_run_settings / create_batch_settings ---------------------------------------------
    "run_args []": (lambda c: c.exp.create_run_settings("true", run_args=[]), r"run_args must be a dict.*got \[\]"),
    "run_args False": (lambda c: c.exp.create_run_settings("true", run_args=False),
                       r"run_args must be a dict.*got False \(bool\)"),
    "env_vars ''": (lambda c: c.exp.create_run_settings("true", env_vars=""), r"env_vars must be a dict.*got ''"),
    "env_vars []": (lambda c: c.exp.create_run_settings("true", env_vars=[]), r"env_vars must be a dict.*got \[\]"),
    "create_run_settings unknown keyword": (lambda c: c.exp.create_run_settings("true", node=2),
                                            (r"create_run_settings\(\) has no argument\(s\) 'node' \(did you mean "
                                             r"'nodes'\?\).*'walltime'")),
    "exe_args NaN": (lambda c: c.exp.create_run_settings("true", exe_args=["-x", NAN]),
                     r"exe_args\[1\] must be a finite number.*got nan \(float\)"),
    "exe_args inf": (lambda c: c.exp.create_run_settings("true", exe_args=[INF]), r"exe_args\[0\] .*got inf"),
    "add_exe_args NaN": (lambda c: c.rs.add_exe_args([NAN]), r"exe_args\[0\] must be a finite number"),
    "run_args value NaN": (lambda c: c.exp.create_run_settings("true", run_args={"mem": NAN}),
                           r"run_args\['mem'\] must be a finite number.*got nan"),
    "RunSettings.set value inf": (lambda c: c.rs.set("mem", INF), r"run_args\['mem'\] must be a finite.*got inf"),
    "env_vars value NaN": (lambda c: c.exp.create_run_settings("true", env_vars={"X": NAN}),
                           r"env_vars\['X'\] must be a finite number.*got nan"),
    "update_env value inf": (lambda c: c.rs.update_env({"X": -INF}), r"env_vars\['X'\] .*got -inf"),
    "batch_args []": (lambda c: c.on("slurm").create_batch_settings(batch_args=[]),
                      r"batch_args must be a dict.*got \[\]"),
    "batch_args ''": (lambda c: c.on("pbs").create_batch_settings(batch_args=""), r"batch_args must be a dict.*''"),
    "batch_args value NaN": (lambda c: c.on("lsf").create_batch_settings(batch_args={"mem": NAN}),
                             r"batch_args\['mem'\] must be a finite number"),
    "create_batch_settings unknown keyword": (lambda c: c.on("slurm").create_batch_settings(partition="debug"),
                                              (r"create_batch_settings\(\) has no argument\(s\) 'partition'.*"
                                               r"SbatchSettings also takes: .*'hostlist'")),
    # -- the scheduler launchers' settings setters and fields -------------------------------------
    "SrunSettings.set_partition None": (lambda c: c.run_settings("slurm").set_partition(None),
                                        r"partition must be a non-empty string; got None"),
    "SrunSettings.set_partition ''": (lambda c: c.run_settings("slurm").set_partition(""), r"partition .*got ''"),
    "SrunSettings.set_partition newline": (lambda c: c.run_settings("slurm").set_partition("a\nb"),
                                           r"partition .*line breaks.*'a\\nb'"),
    "SbatchSettings.set_cpus_per_task str": (lambda c: c.on("slurm").create_batch_settings().set_cpus_per_task("4"),
                                             r"cpus_per_task must be a positive integer, got '4' \(str\)"),
    "SbatchSettings.set_cpus_per_task 0": (lambda c: c.on("slurm").create_batch_settings().set_cpus_per_task(0),
                                           r"cpus_per_task must be a positive integer, got 0"),
    "PbsRunSettings.set_cpu_binding None": (lambda c: c.run_settings("pbs").set_cpu_binding(None),
                                            r"cpu_binding must be a non-empty string; got None"),
    "PbsRunSettings.set_cpu_binding list": (lambda c: c.run_settings("pbs").set_cpu_binding([0, 1]),
                                            r"cpu_binding .*got \[0, 1\] \(list\)"),
    "PbsBatchSettings resources str": (lambda c: c.on("pbs").create_batch_settings(resources="mem=1gb"),
                                       r"resources must be a dict of resource name -> value.*'mem=1gb' \(str\)"),
    "PbsBatchSettings resources NaN": (lambda c: c.on("pbs").create_batch_settings(resources={"mem": NAN}),
                                       r"resources\['mem'\] must be a finite number"),
    "PbsBatchSettings.set_resource newline": (lambda c: c.on("pbs").create_batch_settings().set_resource("mem", "1\n2"),
                                              r"resources\['mem'\] .*on one line"),
    "PbsBatchSettings export_env str": (lambda c: c.on("pbs").create_batch_settings(export_env="no"),
                                        r"export_env must be True or False; got 'no'"),
    "PbsBatchSettings ncpus str": (lambda c: c.on("pbs").create_batch_settings(ncpus="4"),
                                   r"ncpus must be a positive integer or None, got '4'"),
    "LsfRunSettings.set_num_rs 0": (lambda c: c.run_settings("lsf").set_num_rs(0),
                                    r"num_rs must be a positive integer, got 0"),
    "LsfRunSettings.set_tasks_per_rs str": (lambda c: c.run_settings("lsf").set_tasks_per_rs("2"),
                                            r"tasks_per_rs must be a positive integer, got '2'"),
    "LsfRunSettings.set_cpus_per_rs None": (lambda c: c.run_settings("lsf").set_cpus_per_rs(None),
                                            r"cpus_per_rs must be a positive integer, got None"),
    "LsfRunSettings.set_gpus_per_rs -1": (lambda c: c.run_settings("lsf").set_gpus_per_rs(-1),
                                          r"gpus_per_rs must be an integer >= 0, got -1"),
    "LsfRunSettings.set_rs_per_host True": (lambda c: c.run_settings("lsf").set_rs_per_host(True),
                                            r"rs_per_host must be a positive integer, got True \(bool\)"),
    "LsfBatchSettings.set_project None": (lambda c: c.on("lsf").create_batch_settings().set_project(None),
                                          r"project must be a non-empty string; got None"),
    "LsfBatchSettings tasks 0": (lambda c: c.on("lsf").create_batch_settings(tasks=0),
                                 r"tasks must be a positive integer or None, got 0"),
    # -- helpers for plugin authors -----------------------------------------------------------------
    "format_hms str": (lambda c: simctl.format_hms("1:00"), r"format_hms takes a datetime.timedelta.*'1:00' \(str\)"),
    "format_flags None": (lambda c: simctl.format_flags(None), r"format_flags takes a dict.*got None"),
    "format_flags int key": (lambda c: simctl.format_flags({1: 2}), r"format_flags: flag name 1 \(int\)"),
    # -- create_model ---------------------------------------------------------------------------------
    "create_model path a file": (lambda c: c.exp.create_model("x", c.rs, path="a_file"),
                                 r"path .*a_file exists and is not a directory"),
    "create_model path NUL": (lambda c: c.exp.create_model("x", c.rs, path="a\0b"), r"path .*NUL.*'a\\x00b'"),
    "create_model enable_key_prefixing str": (lambda c: c.exp.create_model("x", c.rs, enable_key_prefixing="yes"),
                                              r"enable_key_prefixing must be True or False; got 'yes'"),
    "create_model enable_key_prefixing None": (lambda c: c.exp.create_model("x", c.rs, enable_key_prefixing=None),
                                               r"enable_key_prefixing must be True or False; got None"),
    "create_model batch_settings str": (lambda c: c.exp.create_model("x", c.rs, batch_settings="debug"),
                                        r"batch_settings must be a BatchSettings.*got 'debug' \(str\)"),
    "create_model params_as_args twice": (lambda c: c.exp.create_model("x", c.rs, params={"a": 1},
                                                                       params_as_args=["a", "a"]),
                                          r"params_as_args \['a', 'a'\] names a parameter more than once"),
    "create_model params name newline": (lambda c: c.exp.create_model("x", c.rs, params={"a\nb": 1}),
                                         r"parameter name 'a\\nb' must be on one line"),
    "create_model params name ''": (lambda c: c.exp.create_model("x", c.rs, params={"": 1}),
                                    r"params names must be non-empty strings, got '' \(str\)$"),
    # -- create_ensemble --------------------------------------------------------------------------------
    "create_ensemble batch_settings dict": (lambda c: c.exp.create_ensemble("x", replicas=2, run_settings=c.rs,
                                                                            batch_settings={"nodes": 1}),
                                            r"batch_settings must be a BatchSettings.*\{'nodes': 1\} \(dict\)"),
    "create_ensemble path a file": (lambda c: c.exp.create_ensemble("x", replicas=2, run_settings=c.rs,
                                                                    path=c.tmp / "a_file"),
                                    r"path .*a_file exists and is not a directory"),
    "create_ensemble params_as_args twice": (lambda c: c.exp.create_ensemble("x", params={"a": [1]}, run_settings=c.rs,
                                                                             params_as_args=("a", "a")),
                                             r"params_as_args names \['a'\] more than once"),
    "create_ensemble params name newline": (lambda c: c.exp.create_ensemble("x", params={"a\nb": [1]},
                                                                            run_settings=c.rs),
                                            r"parameter name 'a\\nb' must be on one line"),
    "strategy list with a str after a dict": (lambda c: c.exp.create_ensemble(
        "x", params={"a": [1, 2]}, run_settings=c.rs, perm_strategy=_strategy([{"a": 1}, "a=2"])),
        r"returned members of type str; expected dicts"),
    "strategy member with other parameters": (lambda c: c.exp.create_ensemble(
        "x", params={"a": [1, 2]}, run_settings=c.rs, perm_strategy=_strategy([{"a": 1}, {"b": 2}])),
        r"returned a member with the parameters \['b'\]; expected exactly \['a'\]"),
    # -- Ensemble / Model methods --------------------------------------------------------------------
    "add_model a member of another ensemble": (_of_other_ensemble,
                                               r"model 'other_0' is already a member of ensemble 'other'"),
    "add_model a model of another ensemble": (lambda c: (c.ens.add_model(c.model),
                                                         c.exp.create_ensemble("o").add_model(c.model)),
                                              r"model 'm' is already a member of ensemble 'ens'"),
    "attach to_copy [None]": (lambda c: c.ens.attach_generator_files(to_copy=[None]),
                              r"to_copy\[0\] must be a str or path; got None"),
    "attach to_copy int": (lambda c: c.ens.attach_generator_files(to_copy=5),
                           r"to_copy must be a string or a list of str or path.*got 5 \(int\)"),
    "attach to_configure bytes": (lambda c: c.ens.attach_generator_files(to_configure=b"in.txt"),
                                  r"to_configure .*decode bytes first.*b'in.txt'"),
    "attach to_copy dict": (lambda c: c.ens.attach_generator_files(to_copy={"in.txt": "x"}),
                            r"to_copy .*a dict is ambiguous"),
    "attach to_copy ''": (lambda c: c.ens.attach_generator_files(to_copy=""),
                          r"to_copy\[0\] is an empty path ''"),
    "attach to_symlink nested": (lambda c: c.model.attach_generator_files(to_symlink=[["in.txt"]]),
                                 r"to_symlink\[0\] .*nested lists are not flattened"),
    "register_incoming_entity None": (lambda c: c.model.register_incoming_entity(None),
                                      r"register_incoming_entity takes a Model.*got None"),
    "register_incoming_entity ''": (lambda c: c.model.register_incoming_entity(""),
                                    r"register_incoming_entity .*got '' \(str\)"),
    "register_incoming_entity comma": (lambda c: c.model.register_incoming_entity("a,b"),
                                       r"without ','\); got 'a,b'"),
    "Ensemble.register_incoming_entity int": (lambda c: c.ens.register_incoming_entity(5),
                                              r"register_incoming_entity .*got 5 \(int\)"),
    # -- Experiment lifecycle ----------------------------------------------------------------------
    "start block str": (lambda c: c.exp.start(c.model, block="no"), r"block must be True or False; got 'no'"),
    "start summary int": (lambda c: c.exp.start(c.model, summary=2), r"summary must be True or False; got 2"),
    "start kill_on_interrupt None": (lambda c: c.exp.start(c.model, kill_on_interrupt=None),
                                     r"kill_on_interrupt must be True or False; got None"),
    "generate overwrite str": (lambda c: c.exp.generate(c.model, overwrite="yes"),
                               r"overwrite must be True or False; got 'yes'"),
    "generate overwrite None": (lambda c: c.exp.generate(c.model, overwrite=None), r"overwrite must be .*None"),
    "generate tag newline": (lambda c: c.exp.generate(c.model, tag="\n"), r"tag must be .*on one line.*'\\n'"),
    "poll verbose str": (lambda c: c.exp.poll(1, verbose="quiet"), r"verbose must be True or False; got 'quiet'"),
    "preview show str": (lambda c: c.exp.preview(c.model, show="no"), r"show must be True or False; got 'no'"),
    "finished of an empty ensemble": (lambda c: c.exp.finished(c.exp.create_ensemble("empty")),
                                      r"'empty' has no jobs"),
    "close reason int": (lambda c: c.exp.close(5), r"reason must be a non-empty string; got 5"),
    # -- plugins ------------------------------------------------------------------------------------
    "Plugins.names bad family": (lambda c: c.plugs.names("launchers"),
                                 r"unknown plugin family 'launchers' \(str\); families: .*'launcher'"),
    "Plugins.get bad family": (lambda c: c.plugs.get("strategies", "all_perm"), r"unknown plugin family 'strategies'"),
    "Plugins.get name list": (lambda c: c.plugs.get("launcher", ["local"]),
                              r"a launcher's name must be a str; got \['local'\]"),
    "Plugins.register None": (lambda c: c.plugs.register(None), r"register\(\) takes a plugin.*got None"),
    "Plugins.register name int": (lambda c: c.plugs.register(object(), name=5),
                                  r"name must be a non-empty string or None; got 5"),
    "make_plugins disable int": (lambda c: simctl.make_plugins(disable=5),
                                 r"disable must be a string or a list of str.*got 5"),
    "make_plugins load_entrypoints str": (lambda c: simctl.make_plugins(load_entrypoints="no"),
                                          r"load_entrypoints must be True or False; got 'no'"),
}


@pytest.mark.parametrize("call, why", list(BAD.values()), ids=list(BAD))
def test_careless_input_is_a_config_error_before_anything_is_written(ctx, call, why):
    before = _tree(ctx.tmp)
    with pytest.raises(ConfigError, match=why):
        call(ctx)
    assert _tree(ctx.tmp) == before


# -- valid but unusual: must work --------------------------------------------------------------------


def _disable_as_a_string(c: Ctx) -> None:
    plugs = simctl.make_plugins(disable="random")  # one name, not the letters r, a, n, d, o, m
    assert "random" not in plugs.names("strategy") and "step" in plugs.names("strategy")
    assert "random" not in simctl.make_plugins(disable="random, step").names("strategy")


def _tilde_in_attached_files(c: Ctx) -> None:
    os.environ["HOME"] = str(c.tmp)  # restored by the monkeypatch in the test
    c.model.attach_generator_files(to_configure="~/in.txt", to_copy=["~/a_file"])
    assert c.model.files.to_configure == [str(c.tmp / "in.txt")]
    assert c.model.files.to_copy == [str(c.tmp / "a_file")]
    c.exp.generate(c.model)
    assert (c.tmp / "exp" / "m" / "in.txt").read_text() == "a = 5\n"


def _files_as_a_set(c: Ctx) -> None:
    c.ens.attach_generator_files(to_copy={"a_file", "in.txt"})
    assert c.ens.files.to_copy == [str(c.tmp / "a_file"), str(c.tmp / "in.txt")]


def _prefixing_of_an_empty_ensemble(c: Ctx) -> None:
    empty = c.exp.create_ensemble("empty")
    assert empty.query_key_prefixing() is False  # was True: nothing was ever enabled
    empty.enable_key_prefixing()
    assert empty.query_key_prefixing() is True


def _cpu_binding_number(c: Ctx) -> None:
    rs = c.run_settings("pbs")
    rs.set_cpu_binding(0)
    rs.set_cpu_binding("depth")
    assert rs.format_run_args()[-2:] == ["-cc", "depth"]
    lsf = c.run_settings("lsf")
    lsf.set_gpus_per_rs(0)
    lsf.set_num_rs(4)
    assert lsf.format_run_args() == ["--gpu_per_rs=0", "--nrs=4"]


def _setters_reach_the_preview(c: Ctx) -> None:
    rs = c.run_settings("slurm")
    rs.set_partition("débug")
    bs = c.on("slurm").create_batch_settings(nodes=1)
    bs.set_cpus_per_task(4)
    text = c.on("slurm").preview(c.on("slurm").create_model("x", rs, batch_settings=bs), show=False)
    assert "--partition=débug" in text and "#SBATCH --cpus-per-task=4" in text


def _odd_paths_run(c: Ctx) -> None:
    (c.tmp / "real").mkdir()
    (c.tmp / "link").symlink_to(c.tmp / "real")
    for path in ("link/", "rel/ünï code", "new\nline"):
        with simctl.Experiment("odd", exp_path=path, plugins=c.plugs) as e:
            m = e.create_model("a b", e.create_run_settings(sys.executable, ["-c", "print('x\\ny')"]))
            e.start(e.generate(m))
            assert e.get_status(m) == [Status.COMPLETED]
            assert (Path(e.exp_path) / "a b" / "a b.out").read_text() == "x\ny\n"
    assert (c.tmp / "real" / "a b").is_dir()


def _generated_mixed_with_entities(c: Ctx) -> None:
    c.exp.start(c.exp.generate(c.model), [c.ens], summary=False)
    assert c.exp.get_status(c.model, c.ens) == [Status.COMPLETED] * 3
    assert c.exp.finished(c.ens) is True


def _strategy_member_order_any(c: Ctx) -> None:
    ens = c.exp.create_ensemble("x", params={"a": [1, 2], "b": [3]}, run_settings=c.rs,
                                perm_strategy=_strategy([{"b": 3, "a": 2}, {"a": 1, "b": 3}]))
    assert list(ens.iter_params()) == [{"b": 3, "a": 2}, {"a": 1, "b": 3}]


def _walltime_as_timedelta_to_format(c: Ctx) -> None:
    assert simctl.format_hms(datetime.timedelta(seconds=0.2)) == "00:00:01"
    assert simctl.format_flags({"--n": 4, "exclusive": None}) == ["-n", "4", "--exclusive"]


#: findings: valid input that failed or did the wrong thing before its fix
GOOD: dict[str, Callable[[Ctx], None]] = {
    "make_plugins(disable='random') disables the plugin 'random'": _disable_as_a_string,
    "~ in attached files is the home directory": _tilde_in_attached_files,
    "query_key_prefixing of an empty ensemble": _prefixing_of_an_empty_ensemble,
}

#: guards: unusual input that worked before and must still work with the checks above
STILL_GOOD: dict[str, Callable[[Ctx], None]] = {
    "attached files given as a set": _files_as_a_set,
    "scheduler setters take their usual values": _cpu_binding_number,
    "checked setters still reach the batch script": _setters_reach_the_preview,
    "a symlinked, relative, unicode or newline exp_path runs": _odd_paths_run,
    "a Generated list mixed with entities": _generated_mixed_with_entities,
    "a strategy's members may list parameters in any order": _strategy_member_order_any,
    "helpers with their documented types": _walltime_as_timedelta_to_format,
}


#: the checks above that run models (real processes: marked slow)
RUNS_MODELS = (_odd_paths_run, _generated_mixed_with_entities)


@pytest.mark.parametrize("check", [pytest.param(check, id=name,
                                                marks=[pytest.mark.slow] if check in RUNS_MODELS else [])
                                   for name, check in {**GOOD, **STILL_GOOD}.items()])
def test_unusual_but_valid_input_works(ctx, monkeypatch, check):
    monkeypatch.setenv("HOME", os.environ.get("HOME", "/"))
    check(ctx)


# -- the CLI ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "stop"])
@pytest.mark.parametrize("where, why", [
    ("missing", "does not exist"),
    ("empty", "no simctl experiment at"),
    ("", "does not exist"),
])
def test_cli_without_an_experiment_is_a_usage_error_and_writes_nothing(tmp_path, monkeypatch, command, where, why):
    monkeypatch.chdir(tmp_path)  # '' is the working directory
    (tmp_path / "empty").mkdir()
    before = _tree(tmp_path)
    path = str(tmp_path / where) if where else ""
    res = CliRunner().invoke(cli, [command, path])
    assert res.exit_code == 2, res.output  # click's usage error
    assert why in res.output and "Traceback" not in res.output
    assert _tree(tmp_path) == before  # was: <path>/.simctl/manifest.lock, the directory made if missing


@pytest.mark.parametrize("content", ["", "{not json", "[]", "null", '{"experiment": "x"}'])
def test_cli_with_a_corrupt_manifest_says_so(tmp_path, content):  # a guard: it worked before
    (tmp_path / ".simctl").mkdir()
    (tmp_path / ".simctl" / "manifest.json").write_text(content)
    res = CliRunner().invoke(cli, ["status", str(tmp_path), "--json"])
    assert res.exit_code == 1 and "not a simctl manifest" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_cli_json_is_parseable_with_odd_names(tmp_path, plugs):  # a guard: it worked before
    with simctl.Experiment("ünï x", exp_path=str(tmp_path / "a\nb"), plugins=plugs) as e:
        m = e.create_model("m é", e.create_run_settings("sh", ["-c", "exit 3"]))
        e.start(e.generate(m))
    res = CliRunner().invoke(cli, ["status", str(tmp_path / "a\nb"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["experiment"] == "ünï x" and data["jobs"][0]["name"] == "m é"
    assert data["jobs"][0]["returncode"] == 3
