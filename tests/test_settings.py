"""Run and batch settings: launcher-neutral fields, setters, walltimes, flags."""

from __future__ import annotations

import datetime as dt
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
                                 run_args={"exclusive": None}, env_vars={"OMP_NUM_THREADS": "4"})
    assert isinstance(rs, RunSettings)
    assert rs.exe == "python"
    assert rs.exe_args == ["output_my_parameter.py", "--n", "a b"]
    assert rs.run_command is None  # local runs the executable directly
    assert rs.run_args == {"exclusive": None}
    assert rs.env_vars == {"OMP_NUM_THREADS": "4"}


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
