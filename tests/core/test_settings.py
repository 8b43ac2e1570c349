"""Run and batch settings: launcher-neutral fields, setters, walltimes, flags."""

from __future__ import annotations

import datetime as dt
import re
import sys

import attrs
import pytest
from hypothesis import given, strategies as st

import simctl
from simctl import BatchSettings, RunSettings, format_flags, format_hms, parse_walltime

H, M, S = dt.timedelta(hours=1), dt.timedelta(minutes=1), dt.timedelta(seconds=1)


@pytest.mark.parametrize("value, expected", [
    ("10:00:00", 10 * H),
    ("01:02:03", H + 2 * M + 3 * S),
    ("48:00:00", 48 * H),
    ("1-02:03:04", 24 * H + 2 * H + 3 * M + 4 * S),
    ("2-06:30", 2 * 24 * H + 6 * H + 30 * M),
    ("1-5", 24 * H + 5 * H),
    ("1:30", M + 30 * S),  # MM:SS, as Slurm and PBS read two fields
    ("90", 90 * M),
    (" 15 ", 15 * M),
    (90, 90 * M),
    (1.5, 90 * S),
    (dt.timedelta(minutes=3), 3 * M),
])
def test_walltime_forms(value, expected):
    assert parse_walltime(value) == expected


@pytest.mark.parametrize("value", [
    "abc", "", "10:60:00", "10:00:60", "1:2:3:4", "10h", "1.5", "-5", "1--2", "::", "10:", ":10",
    0, -1, "00:00:00", dt.timedelta(0), dt.timedelta(seconds=-1), True, None, [10], float("nan"), float("inf"),
])
def test_malformed_walltimes_are_rejected(value):
    with pytest.raises(simctl.ConfigError, match="walltime"):
        parse_walltime(value)


@given(st.integers(1, 10 * 24 * 3600))
def test_walltime_round_trips_through_hms(seconds):
    td = dt.timedelta(seconds=seconds)
    hms = format_hms(td)
    assert parse_walltime(hms) == td
    h, m, s = hms.split(":")
    assert int(h) * 3600 + int(m) * 60 + int(s) == seconds and len(m) == len(s) == 2


def test_settings_store_walltime_as_hms():
    assert RunSettings("echo", walltime=90).walltime == "01:30:00"
    assert BatchSettings(time="1-00:00:00").time == "24:00:00"
    bs = BatchSettings()
    bs.set_walltime(dt.timedelta(minutes=5))
    assert bs.time == "00:05:00"
    with pytest.raises(simctl.ConfigError, match="malformed walltime 'soon'"):
        RunSettings("echo", walltime="soon")


def test_run_settings_from_the_experiment(exp):
    rs = exp.create_run_settings(exe="python", exe_args="output_my_parameter.py --n 'a b'",
                                 env_vars={"OMP_NUM_THREADS": "4"})
    assert isinstance(rs, RunSettings)
    assert rs.exe == "python"
    assert rs.exe_args == ["output_my_parameter.py", "--n", "a b"]
    assert rs.run_command is None  # local runs the executable directly
    assert rs.run_args == {}
    assert rs.env_vars == {"OMP_NUM_THREADS": "4"}
    # so a run command's flags would be ignored: refused (issue 16)
    with pytest.raises(simctl.ConfigError, match=r"run_args \{'exclusive': None\} are flags of a run command.*"
                                                 "'local' runs 'python' directly"):
        exp.create_run_settings(exe="python", run_args={"exclusive": None})


def test_run_args_without_a_run_command_are_one_check_on_every_launcher(exp):
    class Direct(simctl.ProcessLauncher):  # a launcher with no run command at all
        name = "direct"
        run_commands = ()

    direct = Direct()
    local = "this launcher's: mpirun, mpiexec, orterun"
    for launcher, commands in ((direct, "srun, mpirun..."), (exp.launcher, local)):
        with pytest.raises(simctl.ConfigError, match=re.escape(
                f"run_args {{'n': 3}} are flags of a run command ({commands}), but launcher {launcher.name!r} "
                "runs 'sim' directly, so they would be ignored; do this")):
            launcher.check_run_args({"n": 3}, None, "'sim'", "do this")
        launcher.check_run_args({}, None, "'sim'", "do this")  # nothing to drop
        launcher.check_run_args({"n": 3}, "mpirun", "'sim'", "do this")  # carried by the run command
    direct.close()


def test_run_settings_setters(exp):
    rs = exp.create_run_settings(exe=sys.executable)
    rs.set_nodes(2)
    rs.set_tasks(8)
    rs.set_tasks_per_node(4)
    rs.set_cpus_per_task(2)
    rs.set_walltime("00:10:00")
    rs.set_hostlist("n1,n2")
    rs.add_exe_args("-c 'print(1)'")
    rs.add_exe_args(["--flag"])
    rs.update_env({"A": "1", "B": None})
    rs.set("distribution", "block")
    assert (rs.nodes, rs.tasks, rs.tasks_per_node, rs.cpus_per_task) == (2, 8, 4, 2)
    assert rs.walltime == "00:10:00" and rs.hostlist == ["n1", "n2"]
    assert rs.exe_args == ["-c", "print(1)", "--flag"]
    assert rs.env_vars == {"A": "1", "B": None}
    assert rs.format_run_args() == ["--distribution=block"]


@pytest.mark.parametrize("setter", ["set_nodes", "set_tasks", "set_tasks_per_node", "set_cpus_per_task"])
@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_counts_must_be_positive_integers(setter, bad):
    rs = RunSettings("echo")
    with pytest.raises(simctl.ConfigError, match="must be a positive integer"):
        getattr(rs, setter)(bad)


def test_batch_settings_from_the_seed_example():
    bs = BatchSettings(nodes=2, time="10:00:00", batch_args={"distribution": "block", "exclusive": None})
    assert (bs.nodes, bs.time) == (2, "10:00:00")
    assert bs.batch_args == {"distribution": "block", "exclusive": None}
    bs.set_queue("debug")
    assert bs.queue == "debug"
    bs.set_partition("gpu")
    bs.set_account("proj1")
    bs.set_hostlist(["a", "b"])
    bs.add_preamble("module load x")
    bs.add_preamble(["export Y=1"])
    bs.set("mem", "4G")
    assert (bs.queue, bs.account, bs.hostlist) == ("gpu", "proj1", ["a", "b"])
    assert bs.preamble == ["module load x", "export Y=1"]
    assert bs.batch_args["mem"] == "4G"
    with pytest.raises(simctl.ConfigError):
        bs.set_nodes(0)


def test_local_launcher_has_no_batch_settings(exp):
    with pytest.raises(simctl.ConfigError, match="has no batch system"):
        exp.create_batch_settings(nodes=2, time="10:00:00")


def test_format_flags():
    args = {"n": 4, "exclusive": None, "distribution": "block", "-x": None, "--mem": "4G"}
    assert format_flags(args) == ["-n", "4", "--exclusive", "--distribution=block", "-x", "--mem=4G"]
    assert format_flags({"distribution": "block"}, long_eq=False) == ["--distribution", "block"]


def test_exe_must_be_given(exp):
    with pytest.raises(simctl.ConfigError, match="exe must be a non-empty string"):
        exp.create_run_settings(exe="")


# -- walltimes: rounding, huge values ---------------------------------------------------------


@pytest.mark.parametrize("td, hms", [
    (dt.timedelta(milliseconds=200), "00:00:01"),  # not 00:00:00, which Slurm reads as no limit
    (dt.timedelta(microseconds=1), "00:00:01"),
    (dt.timedelta(seconds=90.5), "00:01:31"),
    (dt.timedelta(seconds=59, microseconds=999_999), "00:01:00"),
    (dt.timedelta(seconds=60), "00:01:00"),
    (dt.timedelta(days=2), "48:00:00"),
])
def test_sub_second_walltimes_round_up(td, hms):
    assert format_hms(td) == hms
    assert RunSettings("echo", walltime=td).walltime == hms
    assert BatchSettings(time=td).time == hms


def test_fractional_minutes_round_up_to_a_second():
    assert RunSettings("echo", walltime=0.001).walltime == "00:00:01"  # 0.06 s
    bs = BatchSettings()
    bs.set_walltime(0.5 / 60)  # half a second
    assert bs.time == "00:00:01"


@pytest.mark.parametrize("value", [
    "99999999999999", "9" * 5000, "99999999999:00:00", "999999999999-00", "1000000000-00:00:00",
    10**30, 1e300, float("-inf"), -0.5, dt.timedelta(microseconds=-1),
])
def test_huge_and_negative_walltimes_are_config_errors(value):
    with pytest.raises(simctl.ConfigError, match="walltime"):
        parse_walltime(value)
    with pytest.raises(simctl.ConfigError, match="walltime"):
        RunSettings("echo", walltime=value)


def test_the_largest_timedelta_is_still_a_walltime():
    assert format_hms(parse_walltime(dt.timedelta.max)) == f"{(999999999 + 1) * 24}:00:00"  # 23:59:59.999999 up
    assert parse_walltime("999999999-00") == dt.timedelta(days=999999999)


# -- exe_args and env_vars ----------------------------------------------------------------------


def test_exe_args_take_a_string_or_a_finite_iterable(tmp_path):
    assert RunSettings("echo", exe_args="-n 'a b'").exe_args == ["-n", "a b"]
    assert RunSettings("echo", exe_args=["-n", 4, 0.5, tmp_path]).exe_args == ["-n", "4", "0.5", str(tmp_path)]
    assert RunSettings("echo", exe_args=(str(i) for i in range(3))).exe_args == ["0", "1", "2"]
    assert RunSettings("echo", exe_args=map(str, [1, 2])).exe_args == ["1", "2"]
    assert RunSettings("echo", exe_args=None).exe_args == []
    rs = RunSettings("echo")
    rs.add_exe_args(iter(["x", 1]))
    assert rs.exe_args == ["x", "1"]


@pytest.mark.parametrize("bad, why", [
    (b"-n", "decode bytes first"),  # was ['45', '110']
    ({"--n": 4}, "a dict is ambiguous"),  # was ['--n'], the value dropped
    (["-n", None], r"exe_args\[1\] .*got None"),  # was 'None'
    ([[1, 2, 3]], r"exe_args\[0\] .*nested lists are not flattened"),  # was "['1', '2', '3']"
    (123, "exe_args must be a string or a list"),  # was a TypeError
    ("'unclosed", "exe_args: cannot split"),  # was shlex's ValueError
    ({"b", "a"}, "a set has no order"),
])
def test_bad_exe_args_are_refused_naming_exe_args(exp, bad, why):
    with pytest.raises(simctl.ConfigError, match=why):
        RunSettings("echo", exe_args=bad)
    with pytest.raises(simctl.ConfigError, match=why):
        exp.create_run_settings(exe="echo", exe_args=bad)
    rs = RunSettings("echo", exe_args=["keep"])
    with pytest.raises(simctl.ConfigError, match="exe_args"):
        rs.add_exe_args(bad)
    assert rs.exe_args == ["keep"]


def test_env_vars_values_are_made_strings(tmp_path):
    rs = RunSettings("echo", env_vars={"N": 4, "P": tmp_path, "X": None})
    assert rs.env_vars == {"N": "4", "P": str(tmp_path), "X": None}
    rs.update_env({"F": 0.5})
    assert rs.env_vars["F"] == "0.5"


@pytest.mark.parametrize("bad, why", [
    ({"A": ["x"]}, r"env_vars\['A'\] must be .*\['x'\] \(list\)"),  # was the str "['x']"
    ({1: "x"}, "variable name 1 .*must be a non-empty string"),
    ({"A=B": "x"}, "without '='"),
    ({"A\0": "x"}, "NUL"),
    ({"A": True}, r"env_vars\['A'\]"),
    ("A=1", "env_vars must be a dict"),
])
def test_bad_env_vars_are_refused(exp, bad, why):
    with pytest.raises(simctl.ConfigError, match=why):
        RunSettings("echo", env_vars=bad)
    with pytest.raises(simctl.ConfigError, match=why):
        exp.create_run_settings(exe="echo", env_vars=bad)
    rs = RunSettings("echo", env_vars={"K": "1"})
    with pytest.raises(simctl.ConfigError, match=why):
        rs.update_env(bad)
    assert rs.env_vars == {"K": "1"}


# -- run_args / batch_args -------------------------------------------------------------------------


@pytest.mark.parametrize("bad, why", [
    ("abc", "must be a dict of flag name -> value"),
    ({1: 2}, r"flag name 1 \(int\) must be a string"),
    ({"": 1}, "flag name '' must be a non-empty name"),
    ({"a b": 1}, "without spaces"),
    ({"nodes=2": None}, "or '='"),
    ({"nodes": [1]}, r"\['nodes'\] must be a str, int, float or path"),
    ({"exclusive": True}, "None for a flag without a value"),
])
def test_bad_run_and_batch_args_are_refused_when_made(exp, bad, why):
    with pytest.raises(simctl.ConfigError, match="run_args.*" + why):
        RunSettings("echo", run_args=bad)
    with pytest.raises(simctl.ConfigError, match="run_args.*" + why):
        exp.create_run_settings(exe="echo", run_args=bad)
    with pytest.raises(simctl.ConfigError, match="batch_args.*" + why):
        BatchSettings(batch_args=bad)


@pytest.mark.parametrize("key", ["", "a b", "x=1", 5, None, "--"])
def test_bad_flag_names_are_refused_by_set(key):
    rs, bs = RunSettings("echo"), BatchSettings()
    with pytest.raises(simctl.ConfigError, match="run_args: flag name"):
        rs.set(key, 1)
    with pytest.raises(simctl.ConfigError, match="batch_args: flag name"):
        bs.set(key, 1)
    assert rs.run_args == {} and bs.batch_args == {}


def test_set_refuses_bad_values_and_keeps_the_old_ones():
    rs = RunSettings("echo", run_args={"mem": "4G"})
    for bad in ([1], {"a": 1}, True, b"x"):
        with pytest.raises(simctl.ConfigError, match=r"run_args\['n'\] must be"):
            rs.set("n", bad)
    assert rs.run_args == {"mem": "4G"}
    with pytest.raises(simctl.ConfigError, match="run_args must be a dict"):
        rs.run_args = "abc"  # assigning the field is checked too


def test_dashes_are_dropped_from_flag_names():
    rs = RunSettings("echo", run_args={"-np": 2, "--nodes": 1, "-n": 4})
    assert rs.run_args == {"np": 2, "nodes": 1, "n": 4}
    rs.set("--mem", "4G")
    rs.set("-x")
    rs.set("nodes", 3)  # the same flag as "--nodes": replaced, not added
    assert rs.run_args == {"np": 2, "nodes": 3, "n": 4, "mem": "4G", "x": None}
    bs = BatchSettings(batch_args={"--exclusive": None})
    bs.set("--nodes", 1)
    bs.set("nodes", 2)
    assert bs.batch_args == {"exclusive": None, "nodes": 2}
    with pytest.raises(simctl.ConfigError, match="'nodes' and '--nodes' are the same flag"):
        RunSettings("echo", run_args={"nodes": 1, "--nodes": 2})


def test_dashed_keys_meet_the_launchers_own_flags():
    """srun's own --nodes / --exact logic sees a flag given with dashes."""
    from simctl.plugins.launchers.slurm import SrunSettings

    rs = SrunSettings(exe="a.out", run_command="srun", run_args={"--nodes": 1, "--exclusive": None})
    rs.set_nodes(2)
    args = rs.format_run_args()
    assert args.count("--nodes=1") == 1 and "--nodes=2" not in args  # run_args win, once
    assert "--exact" not in args  # --exclusive was given
    assert not any(a.startswith("---") for a in args)


def test_aprun_keeps_the_dash_of_its_multi_letter_flags():
    aprun = RunSettings("a.out", run_command="aprun", run_args={"-cc": "depth", "--ss": None, "-j": 1})
    assert aprun.run_args == {"-cc": "depth", "ss": None, "j": 1}
    aprun.set("-sl", 0)
    assert aprun.run_args["-sl"] == 0
    mpi = RunSettings("a.out", run_command="mpirun", run_args={"-cc": "depth"})
    assert mpi.run_args == {"cc": "depth"}


class _ChdirOwner(RunSettings):
    reserved_run_args = ("chdir", "D")


class _ChdirOwnerBatch(BatchSettings):
    reserved_batch_args = ("chdir", "D")


@pytest.mark.parametrize("key", ["chdir", "--chdir", "D", "-D"])
def test_reserved_run_args_are_refused(key):
    with pytest.raises(simctl.ConfigError, match=f"run_args '{key.lstrip('-')}'.*simctl sets the working "
                                                 "directory itself"):
        _ChdirOwner("echo", run_args={key: "/tmp"})
    rs = _ChdirOwner("echo")
    with pytest.raises(simctl.ConfigError, match="simctl sets the working directory itself"):
        rs.set(key, "/tmp")
    assert rs.run_args == {}
    with pytest.raises(simctl.ConfigError, match="batch_args.*simctl sets the working directory itself"):
        _ChdirOwnerBatch(batch_args={key: "/tmp"})
    assert RunSettings("echo", run_args={key: "/tmp"}).run_args  # the base class reserves nothing


# -- hostlists and the rest of the setters ----------------------------------------------------------


def test_hostlists():
    rs = RunSettings("echo")
    rs.set_hostlist("n1, n2")
    assert rs.hostlist == ["n1", "n2"]
    rs.set_hostlist(("a", "b"))
    assert rs.hostlist == ["a", "b"]
    for bad, why in ((5, "hostlist must be a string or a list of str"), (["n1", 5], r"hostlist\[1\] must be a str"),
                     ([None], r"hostlist\[0\]"), ("n1,,n2", "must be non-empty"), ("", "must be non-empty"),
                     (["a b"], "without spaces"), ({"n1": 1}, "a dict is ambiguous")):
        with pytest.raises(simctl.ConfigError, match=why):
            rs.set_hostlist(bad)
        with pytest.raises(simctl.ConfigError, match=why):
            BatchSettings().set_hostlist(bad)
        with pytest.raises(simctl.ConfigError, match=why):
            RunSettings("echo", hostlist=bad)
    assert rs.hostlist == ["a", "b"]


def test_hostlists_in_the_workload_managers_syntax_are_expanded():
    # the case: split on commas by hand, this was ['nid[001-003', '005]']
    rs = RunSettings("echo")
    rs.set_hostlist("nid[001-003,005]")
    assert rs.hostlist == ["nid001", "nid002", "nid003", "nid005"]  # zero-padding kept
    # pieces keep their order (shard i runs on host i); each range ascends, as `scontrol show hostnames`
    bs = BatchSettings()
    bs.set_hostlist("login2, nid[9-10],r[1-2]n[1-2]")
    assert bs.hostlist == ["login2", "nid9", "nid10", "r1n1", "r1n2", "r2n1", "r2n2"]
    assert RunSettings("echo", hostlist=["a[1-2]", "b"]).hostlist == ["a1", "a2", "b"]
    for bad, why in (("nid[1-", "is not a host list"), ("nid[3-1]", "is not a host list"),
                     ("n[1-2] m", "without spaces"), ("@rack1", "without spaces")):  # no ClusterShell group lookups
        with pytest.raises(simctl.ConfigError, match=why):
            rs.set_hostlist(bad)
    assert rs.hostlist == ["nid001", "nid002", "nid003", "nid005"]


WRONG = {"None": None, "bool": True, "negative": -1, "zero": 0, "float": 1.5, "nan": float("nan"),
         "int-str": "2", "empty": "", "list": ["a"], "nested": [["a"]], "dict": {"a": 1}, "bytes": b"x",
         "object": object()}
#: setter -> the WRONG values it must refuse (the rest are valid input for it)
REFUSES = {
    "set_nodes": set(WRONG),
    "set_tasks": set(WRONG),
    "set_tasks_per_node": set(WRONG),
    "set_cpus_per_task": set(WRONG),
    "set_walltime": set(WRONG) - {"None", "float", "int-str"},
    "set_hostlist": set(WRONG) - {"int-str", "list"},
    "add_exe_args": set(WRONG) - {"int-str", "empty", "list"},
    "update_env": set(WRONG) - {"dict"},
    "set_queue": set(WRONG) - {"int-str"},
    "set_partition": set(WRONG) - {"int-str"},
    "set_account": set(WRONG) - {"int-str"},
    "add_preamble": set(WRONG) - {"int-str", "empty", "list"},
    "set": {"None", "bool", "negative", "zero", "float", "nan", "list", "nested", "dict", "bytes", "object", "empty"},
}


def _cases():
    for setter, refuses in REFUSES.items():
        for kind in sorted(refuses):
            classes = [c for c in (RunSettings, BatchSettings) if hasattr(c, setter)]
            for cls in classes:
                yield pytest.param(cls, setter, kind, id=f"{cls.__name__}.{setter}-{kind}")


@pytest.mark.parametrize("cls, setter, kind", list(_cases()))
def test_careless_setter_calls_are_config_errors(cls, setter, kind):
    settings = cls("echo") if cls is RunSettings else cls()
    before = attrs.asdict(settings)
    with pytest.raises(simctl.ConfigError):
        getattr(settings, setter)(WRONG[kind])  # `set` gets it as the flag name
    assert attrs.asdict(settings) == before  # nothing half-done


@pytest.mark.parametrize("field, value", [
    ("exe", 5), ("exe", ""), ("run_command", 5), ("nodes", 0), ("tasks", "2"), ("tasks_per_node", True),
    ("cpus_per_task", 1.5), ("walltime", "soon"), ("hostlist", 5), ("env_vars", ["A=1"]), ("run_args", "abc"),
    ("exe_args", 5),
])
def test_run_settings_fields_are_checked_when_made(field, value):
    kwargs = {"exe": "echo", field: value}
    with pytest.raises(simctl.ConfigError, match=field):
        RunSettings(**kwargs)


@pytest.mark.parametrize("field, value", [
    ("nodes", -1), ("time", [1]), ("queue", 5), ("queue", ""), ("account", ["a"]), ("batch_args", "abc"),
    ("hostlist", 5), ("preamble", 5), ("preamble", [1]), ("array", "yes"), ("array", 1),
])
def test_batch_settings_fields_are_checked_when_made(field, value):
    name = "walltime" if field == "time" else field
    with pytest.raises(simctl.ConfigError, match=name):
        BatchSettings(**{field: value})


def test_exe_may_be_a_path(tmp_path):
    assert RunSettings(tmp_path / "a.out").exe == str(tmp_path / "a.out")
