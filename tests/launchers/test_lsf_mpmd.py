"""jsrun MPMD through an Explicit Resource File (ERF) and bsub's SMT and
project settings on the ``lsf`` launcher: the command and the ERF by preview;
the ERF written at start and read by a jsrun-shaped command on the documented
LSF stand-in (tests/lsf_standin/). jsrun cannot run here: the test's ``jsrun``
is a few lines of shell that run each ``app`` line of the file it is given with
``--erf_input``, so what is tested is that simctl writes the file where the
command that names it runs, before it runs."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

import simctl
from simctl import ConfigError, Status
from simctl.plugins.launchers import lsf

#: the stand-in's jsrun: runs every ``app <i> : <command>`` line of the ERF file
JSRUN = """#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = --erf_input ] && erf=$2; shift; done
echo "erf=$erf"
sed -n 's/^app [0-9]* : //p' "$erf" | while read -r line; do sh -c "$line"; done
"""


def make(tmp_path: Path) -> simctl.Experiment:
    return simctl.Experiment("l", exp_path=str(tmp_path / "l"), launcher="lsf", plugins=simctl.make_plugins())


def coupled(exp: simctl.Experiment, a_exe: str = "ocean", b_exe: str = "air",
            a_args: list[str] | None = None, b_args: list[str] | None = None) -> simctl.RunSettings:
    a = exp.create_run_settings(a_exe, exe_args=a_args or ["-x", "a b"], run_command="jsrun",
                                run_args={"smpiargs": "-gpu", "np": 4, "bind": "rs"})
    a.set_erf_sets({"rank": "0, 1", "host": "1", "cpu": "{0:2}"})
    b = exp.create_run_settings(b_exe, exe_args=b_args or [], run_command="jsrun", run_args={"d": "cyclic"})
    b.set_erf_sets({"rank_count": "2", "gpu": "{0}", "memory": "1024"})
    a.make_mpmd(b)
    a.set_mpmd_preamble(["overlapping-rs : allow"])
    return a


def test_jsrun_mpmd_preview_shows_the_command_and_the_erf_file(tmp_path):
    exp = make(tmp_path)
    rs = coupled(exp)
    erf = lsf.erf_text(rs)
    assert erf == ("launch_distribution : cyclic\noverlapping-rs : allow\n\n"
                   "app 0 : ocean -x 'a b'\napp 1 : air\n\n"
                   "rank: 0, 1 : { host: 1; cpu: {0:2} } : app 0\n"
                   "2 : { host: *; cpu: *; gpu: {0}; memory: 1024 } : app 1\n")
    # the ERF replaces the resource flags (np, bind, d); the others stay
    assert rs.format_run_args() == ["--smpiargs=-gpu"]
    model = exp.create_model("coupled", rs)
    exp.generate(model)
    text = exp.preview(model, show=False)
    name = lsf.erf_name(rs)
    assert f"exec jsrun --smpiargs=-gpu --erf_input {name} )" in text
    assert f"\n# {os.path.join(model.path, name)}:\n#   launch_distribution : cyclic\n" in text
    assert "#   2 : { host: *; cpu: *; gpu: {0}; memory: 1024 } : app 1\n" in text
    assert not (Path(model.path) / name).exists()  # preview writes nothing


def test_erf_defaults_and_a_preamble_distribution(tmp_path):
    exp = make(tmp_path)
    a = exp.create_run_settings("a", run_command="jsrun")
    a.make_mpmd(exp.create_run_settings("b", run_command="jsrun"))
    assert lsf.erf_text(a) == ("launch_distribution : packed\n\napp 0 : a\napp 1 : b\n\n"
                               "1 : { host: *; cpu: * } : app 0\n1 : { host: *; cpu: * } : app 1\n")
    a.set_mpmd_preamble(["launch_distribution : plane:2"])
    assert lsf.erf_text(a).startswith("launch_distribution : plane:2\n\napp 0")


def test_bad_erf_input_is_refused(tmp_path):
    rs = make(tmp_path).create_run_settings("a", run_command="jsrun")
    with pytest.raises(ConfigError, match="erf_sets key 'cpus' is not one of 'rank', 'rank_count', 'host'"):
        rs.set_erf_sets({"cpus": "1"})
    with pytest.raises(ConfigError, match="erf_sets must be a dict"):
        rs.set_erf_sets(["host"])
    with pytest.raises(ConfigError, match=r"erf_sets\['host'\]"):
        rs.set_erf_sets({"host": 1})
    sets = {"host": "1"}
    rs.set_erf_sets(sets)
    sets["host"] = "2"
    assert rs.erf_sets == {"host": "1"}  # a copy


def test_bsub_smts_alloc_flags_and_project(tmp_path):
    exp = make(tmp_path)
    bs = exp.create_batch_settings(nodes=2, project="CSC1", smts=4, batch_args={"alloc_flags": "nvme"})
    assert bs.account == "CSC1"
    text = exp.preview(exp.create_model("m", exp.create_run_settings("true"), batch_settings=bs), show=False)
    assert "#BSUB -P CSC1" in text and "#BSUB -alloc_flags 'nvme smt4'" in text
    bs.batch_args = {"alloc_flags": "smt1 gpumps"}  # an SMT level named there wins
    assert "#BSUB -alloc_flags 'smt1 gpumps'" in exp.preview(exp.create_model("n", exp.create_run_settings("true"),
                                                                               batch_settings=bs), show=False)
    with pytest.raises(ConfigError, match="project='A' and account='B' both name"):
        exp.create_batch_settings(project="A", account="B")
    with pytest.raises(ConfigError, match="smts"):
        exp.create_batch_settings(smts=-1)


def test_jsrun_mpmd_runs_through_its_erf_file_on_the_lsf_standin(lsf_env, tmp_path, monkeypatch):
    bin_dir = tmp_path / "jsrun-bin"
    bin_dir.mkdir()
    (bin_dir / "jsrun").write_text(JSRUN)
    (bin_dir / "jsrun").chmod(0o755 | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir), prepend=os.pathsep)
    exp = make(tmp_path)
    say = "import sys, pathlib; pathlib.Path(sys.argv[1] + '.txt').write_text(sys.argv[1])"
    rs = coupled(exp, sys.executable, sys.executable, ["-c", say, "ocean"], ["-c", say, "air"])
    model = exp.create_model("coupled", rs, batch_settings=exp.create_batch_settings(smts=2, project="P"))
    exp.generate(model)
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED], (Path(model.path) / "coupled.err").read_text()
    run_dir = Path(model.path)
    erf = run_dir / lsf.erf_name(rs)
    assert erf.read_text() == lsf.erf_text(rs)
    assert (run_dir / "coupled.out").read_text() == f"erf={erf.name}\n"
    assert (run_dir / "ocean.txt").read_text() == "ocean" and (run_dir / "air.txt").read_text() == "air"
