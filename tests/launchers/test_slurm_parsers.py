"""The slurm launcher's parsers and settings, on REAL Slurm 22.05 output recorded
from the test cluster (tests/data/slurm, see its README.md). No cluster needed.

``squeue-O-*.txt`` were recorded with exactly the command the launcher runs
(``squeue -h -r -t all -j IDS -O "JobArrayID:|,State:|,Reason:|,exit_code:|"``,
by ``record-squeue-O.sh``); the other files there use other squeue formats and
are read here for their states and reasons only.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from _paths import DATA as TESTS_DATA

import simctl
from simctl import ConfigError, Status
from simctl.plugins.launchers.slurm import (
    REASONS,
    SQUEUE_FORMAT,
    STATES,
    SbatchSettings,
    SlurmLauncher,
    SrunSettings,
    map_state,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
    sbatch_directives,
    sbatch_quote,
    slurm_filename,
)

DATA = TESTS_DATA / "slurm"


def data(name: str) -> str:
    return (DATA / name).read_text()


def split_exit(text: str) -> tuple[str, int]:
    """A recording made as ``{ cmd 2>&1; echo "exit=$?"; }``: (output, exit code)."""
    body, _, code = text.rstrip("\n").rpartition("exit=")
    return body, int(code)


# -- squeue, in the launcher's own format --------------------------------------------------------


def test_the_recordings_use_the_launchers_exact_squeue_format():
    script = data("record-squeue-O.sh")
    assert f'F="{SQUEUE_FORMAT}"' in script
    assert 'squeue -h -r -t all -j "$ids" -O "$F"' in script


def test_parse_squeue_every_recorded_state():
    got = parse_squeue(data("squeue-O-states.txt"))
    lines = [ln.split("|") for ln in data("squeue-O-states.txt").splitlines()]
    assert set(got) == {ln[0] for ln in lines}  # one entry per listed job / array element
    by_state = {}
    for job_id, state, *_ in lines:
        by_state.setdefault(state, []).append(job_id)
    # COMPLETED, exit 0
    for j in by_state["COMPLETED"]:
        assert got[j].status is Status.COMPLETED and got[j].returncode == 0
    # FAILED: `exit 3` is wait status 768 -> return code 3; `kill -9 $$` -> -9
    failed = {j: got[j] for j in by_state["FAILED"]}
    codes = sorted(st.returncode for st in failed.values())
    assert codes == [-9, 1, 2, 3]
    assert all(st.status is Status.FAILED for st in failed.values())
    killed = next(st for st in failed.values() if st.returncode == -9)
    assert "JobLaunchFailure" in killed.reason
    exit3 = next(st for st in failed.values() if st.returncode == 3)
    assert exit3.reason == "exited with code 3"  # "NonZeroExitCode" adds nothing: not repeated
    # CANCELLED by scancel while running: SIGTERM
    (c,) = by_state["CANCELLED"]
    assert got[c].status is Status.CANCELLED and got[c].returncode == -15
    # PENDING with its reason, and no return code while not finished
    pend = [got[j] for j in by_state["PENDING"]]
    assert {st.reason for st in pend} >= {"BeginTime", "JobHeldUser", "Dependency"}
    assert all(st.status is Status.QUEUED and st.returncode is None for st in pend)
    for j in by_state["RUNNING"]:
        assert got[j].status is Status.RUNNING and got[j].returncode is None and got[j].raw == "RUNNING"


def test_parse_squeue_expands_array_elements_with_r():
    got = parse_squeue(data("squeue-O-states.txt"))
    arrays = {j.split("_")[0] for j in got if "_" in j}
    assert len(arrays) == 2  # the finished array (0-2) and the pending one (0-3)
    sizes = sorted(sum(1 for j in got if j.startswith(a + "_")) for a in arrays)
    assert sizes == [3, 4]
    # without -r a pending array is one compressed line: the launcher always passes -r
    compressed = parse_squeue(data("squeue-O-array-pending-no-r.txt"))
    assert len(compressed) == 1 and next(iter(compressed)).endswith("_[0-3]")


def test_parse_squeue_time_limit():
    got = parse_squeue(data("squeue-O-timeout.txt"))
    timeout = [st for st in got.values() if st.raw == "TIMEOUT"]
    assert len(timeout) == 1
    st = timeout[0]
    assert st.status is Status.FAILED
    assert "time limit" in st.reason and "TimeLimit" in st.reason
    assert st.returncode == -15  # SIGTERM at the limit


def test_parse_squeue_cancelled_pending_keeps_its_reason():
    got = parse_squeue(data("squeue-O-cancelled.txt"))
    assert got and all(st.status is Status.CANCELLED for st in got.values())
    assert any(st.reason == "BeginTime" for st in got.values())


def test_squeue_for_unknown_ids_recorded():
    out, code = split_exit(data("squeue-O-unknown-one.txt"))
    assert code == 1 and "Invalid job id specified" in out  # what query() treats as "left the queue"
    out, code = split_exit(data("squeue-O-unknown-many.txt"))
    assert code == 0 and out.strip() == ""
    assert parse_squeue(out) == {}


@pytest.mark.parametrize("line", ["garbage", "slurm_load_jobs error: Socket timed out", "|RUNNING|None|0|",
                                  "123|RUNNING"])
def test_parse_squeue_rejects_unexpected_lines(line):
    with pytest.raises(ValueError, match="unexpected squeue line"):
        parse_squeue(f"1|RUNNING|None|0|\n{line}\n")


def test_wait_status_decoding():
    # the exit_code column is the raw wait status: code << 8, or the signal number
    text = "1|COMPLETED|None|0|\n2|FAILED|NonZeroExitCode|768|\n3|FAILED|x|9|\n4|CANCELLED|None|36608|\n"
    got = parse_squeue(text)
    assert [got[k].returncode for k in "1234"] == [0, 3, -9, 143]


# -- states recorded by others in other squeue formats (state and reason columns) -----------------


@pytest.mark.parametrize("name", ["squeue_jobs_mixed_states_r_expand_array.txt", "squeue_job_timeout.txt",
                                  "squeue_job_completing.txt", "squeue_t_all_finished.txt"])
def test_every_state_in_the_other_recordings_is_mapped(name):
    for line in data(name).splitlines():
        if not line.strip():
            continue
        _, state, *reason = line.split()
        st = map_state(state, None, " ".join(reason))
        assert st.status is not Status.UNKNOWN, line
        assert st.raw == state


# -- state mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize("state,status", [
    ("PENDING", Status.QUEUED), ("CONFIGURING", Status.QUEUED), ("REQUEUED", Status.QUEUED),
    ("REQUEUE_FED", Status.QUEUED), ("REQUEUE_HOLD", Status.QUEUED), ("RESV_DEL_HOLD", Status.QUEUED),
    ("RUNNING", Status.RUNNING), ("COMPLETING", Status.RUNNING), ("RESIZING", Status.RUNNING),
    ("SIGNALING", Status.RUNNING), ("STAGE_OUT", Status.RUNNING),
    ("SUSPENDED", Status.PAUSED), ("STOPPED", Status.PAUSED),
    ("COMPLETED", Status.COMPLETED),
    ("FAILED", Status.FAILED), ("TIMEOUT", Status.FAILED), ("OUT_OF_MEMORY", Status.FAILED),
    ("NODE_FAIL", Status.FAILED), ("BOOT_FAIL", Status.FAILED), ("DEADLINE", Status.FAILED),
    ("PREEMPTED", Status.FAILED), ("SPECIAL_EXIT", Status.FAILED),
    ("CANCELLED", Status.CANCELLED), ("REVOKED", Status.CANCELLED),
])
def test_every_documented_slurm_state_is_mapped(state, status):
    st = map_state(state, 0)
    assert st.status is status
    assert st.raw == state


def test_the_24_documented_states_are_all_in_the_table():
    documented = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "CONFIGURING", "COMPLETING", "DEADLINE", "FAILED",
                  "NODE_FAIL", "OUT_OF_MEMORY", "PENDING", "PREEMPTED", "RUNNING", "RESV_DEL_HOLD",
                  "REQUEUE_FED", "REQUEUE_HOLD", "REQUEUED", "RESIZING", "REVOKED", "SIGNALING",
                  "SPECIAL_EXIT", "STAGE_OUT", "STOPPED", "SUSPENDED", "TIMEOUT"}
    assert documented <= set(STATES)


@pytest.mark.parametrize("state", ["TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"])
def test_failure_states_carry_a_reason(state):
    st = map_state(state, -15, "None")
    assert st.reason == REASONS[state]


def test_sacct_spellings_are_read():
    assert map_state("CANCELLED by 0").status is Status.CANCELLED
    assert map_state("CANCELLED by 0").raw == "CANCELLED"
    assert map_state("COMPLETED+").status is Status.COMPLETED


@pytest.mark.parametrize("raw", ["WEIRD_NEW_STATE", "", "?"])
def test_an_unknown_state_is_reported_never_guessed(raw):
    st = map_state(raw, 5)
    assert st.status is Status.UNKNOWN
    assert repr(raw) in st.reason


# -- sbatch, sacct ------------------------------------------------------------------------------


def test_parse_sbatch_recorded():
    out, code = split_exit(data("sbatch-parsable.txt"))
    assert code == 0
    assert parse_sbatch(out) == out.strip()
    assert parse_sbatch(data("sbatch_parsable.txt")) == data("sbatch_parsable.txt").strip()
    assert parse_sbatch("4242;cluster-a\n") == "4242"  # --parsable on a federated/multi-cluster site
    # sbatch exits 0 with a warning after the id (stdout, then stderr): the job is real, keep its id
    assert parse_sbatch("535\nsbatch: warning: can't honor --ntasks-per-node set to 1 which doesn't match "
                        "the requested tasks 2 with the number of requested nodes 2. Ignoring.\n") == "535"


def test_parse_sbatch_rejects_output_without_an_id():
    out, _ = split_exit(data("sbatch-plain.txt"))  # without --parsable: "Submitted batch job N"
    assert out.startswith("Submitted batch job")
    for text in (out, "", "sbatch: error: Batch job submission failed: Socket timed out"):
        with pytest.raises(ValueError):
            parse_sbatch(text)


def test_recorded_sbatch_rejections():
    out, code = split_exit(data("sbatch-bad-partition.txt"))
    assert code == 1 and "invalid partition specified: nope" in out
    out, code = split_exit(data("sbatch-bad-time.txt"))
    assert code != 0 and "Invalid --time specification" in out


def test_sacct_with_accounting_disabled_recorded():
    out, code = split_exit(data("sacct-disabled.txt"))
    assert code == 1 and out.strip() == "Slurm accounting storage is disabled"
    assert "accounting_storage/none" in data("scontrol-accounting.txt")


def test_parse_sacct_documented_format():
    # `sacct -n -P -X -o JobID,State,ExitCode` (code:signal); the test cluster has accounting off,
    # so these lines follow the documented format rather than a recording
    got = parse_sacct("101|COMPLETED|0:0\n102|FAILED|3:0\n103|CANCELLED by 0|0:15\n104_1|TIMEOUT|0:0\n")
    assert got["101"].status is Status.COMPLETED and got["101"].returncode == 0
    assert got["102"].status is Status.FAILED and got["102"].returncode == 3
    assert got["103"].status is Status.CANCELLED and got["103"].returncode == -15
    assert got["104_1"].status is Status.FAILED and "time limit" in got["104_1"].reason
    with pytest.raises(ValueError):
        parse_sacct("101 COMPLETED\n")


# -- directives and flags -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["plain", "a b", "it's", 'say "hi"', "#3 not a comment", "back\\slash",
                                   "$HOME", "tab\there", "50%", ""])
def test_sbatch_quote_is_undone_by_sbatchs_parser(value):
    assert _sbatch_parse(sbatch_quote(value)) == value


def _sbatch_parse(text: str) -> str:
    """What sbatch 22.05's ``_get_argument`` (src/sbatch/opt.c) reads from a
    directive: whitespace ends an unquoted word, ' and " quote, backslash
    escapes the next character, an unquoted # starts a comment."""
    out, quote, escape = [], "", False
    for ch in text:
        if escape:
            out.append(ch)
            escape = False
        elif ch == "\\":
            escape = True
        elif quote:
            if ch == quote:
                quote = ""
            else:
                out.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == "#" or ch.isspace():
            break
        else:
            out.append(ch)
    return "".join(out)


def test_sbatch_quote_refuses_line_breaks():
    with pytest.raises(ConfigError, match="line break"):
        sbatch_quote("a\nb")


def test_slurm_filename_disarms_patterns():
    assert slurm_filename("/x/%j and %x.out") == "/x/%%j and %%x.out"


def test_sbatch_directives_spelling():
    assert sbatch_directives({"nodes": 2, "exclusive": None, "n": 4, "--comment": "a b"}) == [
        "--nodes=2", "--exclusive", "-n 4", '--comment="a b"']


def _preview(tmp_path, bs, n=2, rs_kwargs=None):
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="slurm", plugins=simctl.make_plugins())
    rs = exp.create_run_settings(exe="/bin/echo", exe_args=["hi"], **(rs_kwargs or {}))
    ens = exp.create_ensemble("ens", replicas=n, run_settings=rs, batch_settings=bs)
    return exp, exp.preview(ens, show=False)


def test_batch_settings_become_sbatch_directives(tmp_path):
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="slurm", plugins=simctl.make_plugins())
    bs = exp.create_batch_settings(nodes=2, time=90, queue="debug", account="proj",
                                   batch_args={"distribution": "block", "exclusive": None})
    bs.set_hostlist(["vm", "vm2"])
    assert isinstance(bs, SbatchSettings)
    _, text = _preview(tmp_path, bs)
    for d in ("--nodes=2", "--time=01:30:00", "--partition=debug", "--account=proj", "--nodelist=vm,vm2",
              "--distribution=block", "--exclusive"):
        assert f"#SBATCH {d}\n" in text
    assert "#SBATCH --ntasks" not in text  # exclusive given: no task count imposed


@pytest.mark.parametrize("time,want", [("00:10:00", "00:10:00"), (5, "00:05:00"),
                                       (dt.timedelta(hours=30), "30:00:00"), ("1-02:00:00", "26:00:00")])
def test_walltime_in_slurms_format(tmp_path, time, want):
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="slurm", plugins=simctl.make_plugins())
    _, text = _preview(tmp_path, exp.create_batch_settings(time=time))
    assert f"#SBATCH --time={want}\n" in text


def test_default_task_count_is_room_for_every_member(tmp_path):
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="slurm", plugins=simctl.make_plugins())
    _, text = _preview(tmp_path, exp.create_batch_settings(), n=3)
    assert "#SBATCH --ntasks=3\n" in text
    _, text = _preview(tmp_path, exp.create_batch_settings(batch_args={"ntasks": 1}), n=3)
    assert "#SBATCH --ntasks=1\n" in text and "--ntasks=3" not in text


def test_default_task_count_adds_up_what_each_member_runs(tmp_path):
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="slurm", plugins=simctl.make_plugins())
    ens = exp.create_ensemble("ens", batch_settings=exp.create_batch_settings())
    sizes = [{"tasks": 4}, {"nodes": 2}, {"nodes": 2, "tasks_per_node": 3}, {"run_args": {"n": 5}}, {}]
    for i, kw in enumerate(sizes):
        run_args = kw.pop("run_args", None)
        rs = exp.create_run_settings(exe="/bin/true", run_args=run_args)
        for key, value in kw.items():
            getattr(rs, f"set_{key}")(value)
        ens.add_model(exp.create_model(f"m{i}", rs))
    text = exp.preview(ens, show=False)
    assert "#SBATCH --ntasks=18\n" in text  # 4 + 2 + 6 + 5 + 1


def test_array_directive(tmp_path):
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="slurm", plugins=simctl.make_plugins())
    _, text = _preview(tmp_path, exp.create_batch_settings(array=True), n=4)
    assert "#SBATCH --array=0-3\n" in text and "#SBATCH --ntasks" not in text
    assert 'case "${SLURM_ARRAY_TASK_ID}" in' in text
    assert [f"  {i}) " in text for i in range(4)] == [True] * 4


def test_srun_flags():
    rs = SrunSettings(exe="a.out", run_command="srun")
    rs.set_nodes(2)
    rs.set_tasks(8)
    rs.set_tasks_per_node(4)
    rs.set_cpus_per_task(2)
    rs.set_walltime("00:05:00")
    rs.set_hostlist("n1,n2")
    rs.set_partition("debug")
    rs.set_exclusive()
    rs.set("mpi", "pmix")
    assert rs.format_run_args() == ["--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--cpus-per-task=2",
                                    "--time=00:05:00", "--nodelist=n1,n2", "--partition=debug", "--exclusive",
                                    "--mpi=pmix"]  # --exclusive given: no --exact added


def test_slurm_host_lists_reach_srun_and_sbatch_expanded(tmp_path):
    # "nid[001-003,005]" was split at its comma into two names no node has
    rs = SrunSettings(exe="a.out", run_command="srun")
    rs.set_hostlist("nid[001-003,005]")
    assert "--nodelist=nid001,nid002,nid003,nid005" in rs.format_run_args()
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="slurm", plugins=simctl.make_plugins())
    bs = exp.create_batch_settings(nodes=2)
    bs.set_hostlist("gpu[07-08]")
    _, text = _preview(tmp_path, bs)
    assert "#SBATCH --nodelist=gpu07,gpu08\n" in text


def test_srun_runs_one_task_unless_told_otherwise():
    # inside an allocation srun would inherit SLURM_NTASKS and start the program once per
    # task of the whole allocation (a batch job's or salloc's)
    # one node: no "can't run 1 processes on 3 nodes" in a multi-node allocation (issue 18)
    assert SrunSettings(exe="a.out", run_command="srun").format_run_args() == ["--ntasks=1", "--nodes=1", "--exact"]
    pinned = SrunSettings(exe="a.out", run_command="srun")
    pinned.set_hostlist(["n1", "n2"])
    pinned.set_tasks(2)
    assert pinned.format_run_args() == ["--ntasks=2", "--nodelist=n1,n2", "--nodes=2", "--exact"]
    rs = SrunSettings(exe="a.out", run_command="srun")
    rs.set_nodes(3)
    assert rs.format_run_args() == ["--nodes=3", "--ntasks=3", "--exact"]
    for args in ({"n": 4}, {"ntasks": 4}):
        rs = SrunSettings(exe="a.out", run_command="srun", run_args=args)
        assert not any(a.startswith("--ntasks=") and a != "--ntasks=4" for a in rs.format_run_args())
    # tasks per node alone does not stop srun inheriting the allocation's task count (srun
    # warns and ignores it): the step asks for nodes x tasks per node
    rs = SrunSettings(exe="a.out", run_command="srun")
    rs.set_tasks_per_node(2)
    assert rs.format_run_args() == ["--ntasks-per-node=2", "--ntasks=2", "--exact"]
    rs.set_nodes(3)
    assert rs.format_run_args() == ["--nodes=3", "--ntasks-per-node=2", "--ntasks=6", "--exact"]
    rs = SrunSettings(exe="a.out", run_command="srun", run_args={"ntasks-per-node": 2})
    assert "--ntasks=2" in rs.format_run_args()


def test_srun_steps_take_only_what_they_ask_for():
    # without --exact a step takes every CPU of its nodes in the allocation (Slurm >= 21.08),
    # so the members of one batch job would run one after another
    assert "--exact" in SrunSettings(exe="a.out", run_command="srun").format_run_args()
    for flag in ("overlap", "exact", "exclusive", "whole"):
        args = SrunSettings(exe="a.out", run_command="srun", run_args={flag: None}).format_run_args()
        assert args.count(f"--{flag}") == 1 and (flag == "exact" or "--exact" not in args)


def test_mpirun_flags_under_slurm():
    rs = SrunSettings(exe="a.out", run_command="mpirun")
    rs.set_tasks(4)
    rs.set_hostlist(["n1"])
    rs.set("oversubscribe")
    assert rs.format_run_args() == ["-n", "4", "--host", "n1", "--oversubscribe"]
    rs = SrunSettings(exe="a.out", run_command="mpiexec")
    rs.set_nodes(2)
    rs.set_tasks_per_node(3)
    assert rs.format_run_args() == ["-n", "6", "-npernode", "3"]


def test_job_names_are_made_safe():
    launcher = SlurmLauncher()
    name = launcher.job_name("my run; $(rm -rf ~) 'x' #1")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", name) and name.startswith("my_run_") and name.endswith("_x___1")
    assert launcher.job_name("ok-name_1.2") == "ok-name_1.2"
    assert len(launcher.job_name("n" * 300)) == 64


# -- jobs waiting for the experiment's own nodes (issue 21) ----------------------------------------

#: recorded on the test Slurm: a one-CPU job running on vm-real (2 CPUs), an exclusive job and a
#: two-CPU job pending behind it (``squeue -h -r -t all -O SQUEUE_FORMAT,PLACEMENT_FORMAT``)
PLACED = """\
1838|PENDING|Resources|0||1|1|real|NO||
1839|PENDING|Priority|0||1|2|real|OK||
1837|RUNNING|None|0|vm-real|1|1|real|OK||
"""
SINFO = "debug*|vm|32\nreal|vm-real|2\n"


def test_parse_placements_and_sinfo():
    from simctl.plugins.launchers.slurm_nodes import hostnames, parse_placements, parse_sinfo, parse_slurm_conf

    got = parse_placements(PLACED)
    assert got["1837"].nodes == ("vm-real",) and got["1837"].cpus == 1 and not got["1837"].exclusive
    assert got["1838"].exclusive and got["1838"].nodes == () and got["1838"].reason == "Resources"
    assert parse_placements("1|RUNNING|None|0|\n") == {}  # the status columns only: no placement
    assert parse_sinfo(SINFO) == {"debug": {"vm": 32}, "real": {"vm-real": 2}}
    # the test Slurm's and the multi-node cluster's slurm.conf lines (setup-slurm.sh, setup-multinode.sh)
    conf = """# comment
NodeName=vm NodeAddr=127.0.0.1 Port=6818 CPUs=32 RealMemory=65536 State=UNKNOWN
NodeName=vm-real NodeHostname=vm NodeAddr=127.0.0.1 Port=6819 CPUs=2 RealMemory=23552 State=UNKNOWN
NodeName=DEFAULT Sockets=2 CoresPerSocket=4 ThreadsPerCore=2
NodeName=sm[1-3] NodeAddr=10.78.0.[11-13]   # default shape: 16 CPUs
PartitionName=debug Nodes=vm Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=real Nodes=vm-real MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=compute Nodes=sm[1-3]
PartitionName=all Nodes=ALL
"""
    parts, default = parse_slurm_conf(conf)
    assert default == "debug" and parts["debug"] == {"vm": 32} and parts["real"] == {"vm-real": 2}
    assert parts["compute"] == {"sm1": 16, "sm2": 16, "sm3": 16} and len(parts["all"]) == 5
    assert parse_slurm_conf("") == ({}, "")
    assert sorted(hostnames("mn[1-3],login")) == ["login", "mn1", "mn2", "mn3"]
    assert hostnames("(null)") == [] and hostnames("") == []


def test_a_job_pending_behind_the_experiments_store_is_blocked_for_ever_only_when_nothing_else_frees():
    from simctl.plugins.launchers.slurm_nodes import blocked, parse_placements, parse_sinfo

    jobs, parts = parse_placements(PLACED), parse_sinfo(SINFO)
    names = {"1837": "orchestrator", "1838": "ens", "1839": "other"}
    got = blocked(jobs, parts, {"1837"}, names)
    assert set(got) == {"1838", "1839"}
    assert got["1838"].never  # exclusive: the store's node is never whole again
    assert got["1839"].never  # 2 CPUs on a node of 2, one of them the store's
    assert "1837 (orchestrator, runs until stopped)" in got["1839"].message and "vm-real" in got["1839"].message
    # the holder ends by itself: both only wait, and say for what
    later = blocked(jobs, parts, set(), names)
    assert not later["1838"].never and "it starts when they free" in later["1838"].message
    # a bigger node: two CPUs fit beside the store's one
    assert not blocked(jobs, {"real": {"vm-real": 4}}, {"1837"}, names)["1839"].never
    # nothing of the experiment's runs there: nothing to say
    assert blocked({k: v for k, v in jobs.items() if k != "1837"}, parts, set(), names) == {}


@pytest.mark.parametrize("nodes,hosts,want", [(3, None, [0, 1, 2]), (2, None, [0, 1, 0]), (None, None, None),
                                              (1, None, None), (None, ["n1", "n2", "n3"], None)])
def test_a_batch_stores_shards_go_one_per_node_of_a_multi_node_job(tmp_path, nodes, hosts, want):
    """Issue 18: without hosts=, shard i of a batch store in a job of N > 1
    nodes runs on node i mod N (``--relative``); a job of one node (or one
    that does not say) is left to Slurm, and hosts= places the shards itself."""
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="slurm", plugins=simctl.make_plugins())
    db = exp.create_database(port=6780, db_nodes=3, batch=True, interface="lo", hosts=hosts)
    if nodes:
        db.batch_settings.set_nodes(nodes)
    text = exp.preview(db, show=False)
    relative = [int(r) for r in re.findall(r"--relative=(\d+)", text)]
    assert relative == (want or []), text
    if hosts:
        assert all(f"--nodelist={h}" in text for h in hosts)


def test_a_lost_node_is_read_from_sruns_stderr(tmp_path):
    """Issue 18: srun exits 0 when Slurm sets a node of its step DOWN; what it
    printed (Slurm 22.05, seen on the multi-node test cluster) says so."""
    from simctl.plugins.launchers.slurm import node_failure

    err = tmp_path / "m.err"
    err.write_text("x" * 100_000 + "\nsrun: error: Node failure on sm3\n"
                   "srun: Job step aborted: Waiting up to 32 seconds for job step to finish.\n")
    assert node_failure(str(err)) == "sm3"
    err.write_text("srun: error: sm2: task 0: Terminated\nmy program: error: Node failure on x\n")
    assert node_failure(str(err)) is None
    assert node_failure(str(tmp_path / "missing.err")) is None
