"""The slurm launcher on a REAL Slurm cluster (the single-node one of scripts/setup-slurm.sh,
and the multi-node one of scripts/setup-multinode.sh: slurm_helpers.TARGET):
sbatch jobs, srun steps inside an allocation, job arrays, cancellation,
failures, the time limit, a 20-member ensemble, quoting, job names, preview.

Every test here is marked ``slurm`` and FAILS (never skips) without the cluster.
Resources asked for are small: the cluster is shared with other test runs.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psutil
import pytest
from slurm_helpers import (
    PY,
    RECORDER,
    TARGET,
    CmdLog,
    no_allocation_env,
    py_settings,
    scancel_quietly,
    script,
    slurm_exp,
    squeue_field,
    squeue_state,
    use_recorder,
    wait_until,
)

import simctl
from simctl import Status

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


#: prints what a model sees of Slurm, and its arguments, as JSON on one line
REPORT = """
    import json, os, sys
    keys = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_PROCID")
    print(json.dumps({"argv": sys.argv[1:], "pid": os.getpid(), "cwd": os.getcwd(),
                      **{k: os.environ.get(k) for k in keys}, "X": os.environ.get("X")}))
"""


def report_of(model) -> list[dict]:
    out = Path(model.path) / f"{model.name}.out"
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def job_of(exp, model) -> str:
    """The Slurm job id behind a model launched as a batch member (``<job>:<index>``)."""
    job_id = exp.controller.jobs[model.key].record.job_id
    assert job_id and ":" in job_id and not job_id.startswith("step:"), job_id
    return job_id.rpartition(":")[0]


# -- sbatch jobs ----------------------------------------------------------------------------------


def test_a_model_alone_gets_its_own_allocation_as_a_batch_job_of_one(tmp_path):
    exp = slurm_exp(tmp_path)
    model = exp.create_model("solo", py_settings(exp, script(tmp_path, REPORT), "hello"))
    exp.generate(model)
    exp.start(model, block=True)

    assert exp.get_status(model) == [Status.COMPLETED]
    job = job_of(exp, model)
    assert exp.controller.jobs["solo"].record.job_id == f"{job}:0"
    (seen,) = report_of(model)
    assert seen["SLURM_JOB_ID"] == job  # ran inside the job simctl submitted...
    assert seen["SLURM_STEP_ID"] == "0"  # ...as an srun step of it
    assert seen["argv"] == ["hello"]
    assert seen["cwd"] == model.path
    assert squeue_field(job, "Name") == "solo"
    scripts = list(Path(model.path).glob(".simctl-batch/solo-*/job.sh"))
    assert len(scripts) == 1
    text = scripts[0].read_text()
    assert "#SBATCH --ntasks=1\n" in text and text.count(" srun ") == 1


def test_an_ensemble_with_batch_settings_is_one_batch_job_whose_members_are_steps(tmp_path, monkeypatch):
    log = use_recorder(monkeypatch, tmp_path / "cmds.log")
    exp = slurm_exp(tmp_path)
    bs = exp.create_batch_settings(nodes=1, time="00:10:00", batch_args={"distribution": "block"})
    rs = py_settings(exp, script(tmp_path, REPORT))
    ens = exp.create_ensemble("ens", params={"a": [1, 2, 3], "b": ["x", "y", "z"]}, params_as_args=["a", "b"],
                              run_settings=rs, batch_settings=bs, perm_strategy="step")
    exp.generate(ens)
    exp.start(ens, block=True)

    assert exp.get_status(ens) == [Status.COMPLETED] * 3
    assert len(log.of("sbatch")) == 1  # one submission for the whole ensemble
    jobs = {job_of(exp, m) for m in ens.models}
    assert len(jobs) == 1
    (job,) = jobs
    assert [len(report_of(m)) for m in ens.models] == [1, 1, 1]  # each ran once, as one task
    reports = [report_of(m)[0] for m in ens.models]
    assert {r["SLURM_JOB_ID"] for r in reports} == {job}
    assert len({r["SLURM_STEP_ID"] for r in reports}) == 3  # three steps of that one job
    assert [r["argv"] for r in reports] == [["-a", "1", "-b", "x"], ["-a", "2", "-b", "y"], ["-a", "3", "-b", "z"]]
    assert [exp.controller.jobs[m.key].record.job_id for m in ens.models] == [f"{job}:{i}" for i in range(3)]
    assert squeue_field(job, "Name") == "ens"


BARRIER = """
    import os, sys, time
    me = int(next(a for a in sys.argv if a.startswith("--me=")).split("=")[1])
    n = int(sys.argv[sys.argv.index("-n") + 1])
    open(os.path.join("..", f"started-{me}"), "w").close()
    end = time.monotonic() + 120
    while not all(os.path.exists(os.path.join("..", f"started-{i}")) for i in range(n)):
        if time.monotonic() > end:
            sys.exit(f"member {me}: the others never started beside me")
        time.sleep(0.05)
"""


def test_members_of_one_batch_job_run_side_by_side(tmp_path):
    # each member waits until every member has started: members run one after another
    # (srun steps that each take the whole allocation) would fail this
    exp = slurm_exp(tmp_path)
    ens = exp.create_ensemble("side", params={"me": [0, 1, 2], "n": [3, 3, 3]}, perm_strategy="step",
                              params_as_args=["me", "n"],
                              run_settings=exp.create_run_settings(exe=PY, exe_args=[script(tmp_path, BARRIER)]),
                              batch_settings=exp.create_batch_settings(time="00:05:00"))
    exp.generate(ens)
    exp.start(ens, block=True)
    assert exp.get_status(ens) == [Status.COMPLETED] * 3, [exp.controller.jobs[m.key].status for m in ens.models]


def test_job_array_option(tmp_path):
    exp = slurm_exp(tmp_path)
    prog = script(tmp_path, REPORT + "    raise SystemExit(int(sys.argv[-1].split('=')[-1]))\n")
    rs = py_settings(exp, prog)
    ens = exp.create_ensemble("arr", params={"code": [0, 3, 0]}, params_as_args=["code"], run_settings=rs,
                              batch_settings=exp.create_batch_settings(time="00:05:00", array=True))
    bs = exp.create_batch_settings(time="00:05:00")
    bs.array = True  # the attribute works as well as the keyword
    ens2 = exp.create_ensemble("arr2", replicas=2, run_settings=py_settings(exp, script(tmp_path, REPORT, "r.py")),
                               batch_settings=bs)
    exp.generate(ens, ens2)
    exp.start(ens, ens2, block=True)

    assert exp.get_status(ens) == [Status.COMPLETED, Status.FAILED, Status.COMPLETED]
    failed = exp.controller.jobs["arr/arr_1"].status
    assert failed.returncode == 3 and "3" in failed.reason
    assert exp.get_status(ens2) == [Status.COMPLETED] * 2
    for e in (ens, ens2):
        (job,) = {job_of(exp, m) for m in e.models}
        reports = [report_of(m)[0] for m in e.models]
        # each member ran as its own array element, element i = member i
        assert [r["SLURM_ARRAY_TASK_ID"] for r in reports] == [str(i) for i in range(len(e.models))]
        assert {r["SLURM_ARRAY_JOB_ID"] for r in reports} == {job}
        script_text = next(Path(e.path).glob(f".simctl-batch/{e.name}-*/job.sh")).read_text()
        assert f"#SBATCH --array=0-{len(e.models) - 1}\n" in script_text


def test_an_ensemble_of_20_members_all_complete_with_their_outputs(tmp_path):
    exp = slurm_exp(tmp_path)
    prog = script(tmp_path, """
        import sys
        x = int(sys.argv[sys.argv.index("-x") + 1])
        with open("result.txt", "w") as fh:
            fh.write(f"{x} squared is {x * x}\\n")
        print("member", x)
    """)
    ens = exp.create_ensemble("twenty", params={"x": list(range(20))}, params_as_args=["x"],
                              run_settings=py_settings(exp, prog),
                              # every node of the default partition: 20 tasks do not fit one node of 4 CPUs
                              batch_settings=exp.create_batch_settings(nodes=len(TARGET.nodes), time="00:10:00"))
    exp.generate(ens)
    exp.start(ens, block=True)

    assert exp.get_status(ens) == [Status.COMPLETED] * 20
    assert all(exp.controller.jobs[m.key].status.returncode == 0 for m in ens.models)
    assert len({job_of(exp, m) for m in ens.models}) == 1
    for m in ens.models:
        x = m.params["x"]
        assert (Path(m.path) / "result.txt").read_text() == f"{x} squared is {x * x}\n"
        assert (Path(m.path) / f"{m.name}.out").read_text() == f"member {x}\n"
    summary = exp.summary()
    assert summary.count("Completed") == 20


# -- failures, time limit, cancellation ---------------------------------------------------------------


def test_a_job_that_fails(tmp_path):
    exp = slurm_exp(tmp_path)
    model = exp.create_model("bad", py_settings(exp, script(tmp_path, "import sys; sys.exit(3)")))
    exp.generate(model)
    exp.start(model, block=True)

    assert exp.get_status(model) == [Status.FAILED]
    st = exp.controller.jobs["bad"].status
    assert st.returncode == 3
    assert "exited with code 3" in st.reason
    rec = next(r for r in exp.summary_data() if r.name == "bad")
    assert rec.status is Status.FAILED and rec.returncode == 3


def test_a_job_that_exceeds_its_time_limit(tmp_path):
    exp = slurm_exp(tmp_path)
    model = exp.create_model("slow", exp.create_run_settings(exe="sleep", exe_args="300"),
                             batch_settings=exp.create_batch_settings(time="00:01:00"))
    exp.generate(model)
    exp.start(model, block=True)  # ~1 minute: the limit, plus slurmctld's check interval

    assert exp.get_status(model) == [Status.FAILED]
    st = exp.controller.jobs["slow"].status
    assert "time limit" in st.reason.lower() or "TIMEOUT" in st.reason, st.reason
    assert st.raw == "TIMEOUT"
    assert squeue_state(job_of(exp, model)) in ("TIMEOUT", "")  # "" once it aged out of squeue


def test_stop_cancels_the_batch_job_and_its_process_is_gone(tmp_path):
    exp = slurm_exp(tmp_path)
    prog = script(tmp_path, """
        import os, time
        open("pid", "w").write(str(os.getpid()))
        time.sleep(300)
    """)
    model = exp.create_model("sleeper", py_settings(exp, prog))
    ens = exp.create_ensemble("pair", replicas=2, run_settings=py_settings(exp, prog),
                              batch_settings=exp.create_batch_settings(time="00:10:00"))
    exp.generate(model, ens)
    exp.start(model, ens, block=False)
    members = [model, *ens.models]
    pids = [int(wait_until(lambda m=m: (Path(m.path) / "pid").exists() and (Path(m.path) / "pid").read_text(),
                           f"{m.name} to start")) for m in members]
    assert all(psutil.pid_exists(p) for p in pids)
    wait_until(lambda: exp.get_status(model, ens) == [Status.RUNNING] * 3, "RUNNING to be noticed")

    exp.stop(model, ens)

    assert exp.get_status(model, ens) == [Status.CANCELLED] * 3
    assert exp.finished(model) and exp.finished(ens)
    for job in {job_of(exp, m) for m in members}:
        assert squeue_state(job) in ("CANCELLED", "")
    # the processes are gone (Slurm kills them; stop() waited for the job to leave COMPLETING)
    wait_until(lambda: not any(psutil.pid_exists(p) for p in pids), "the cancelled processes to be gone",
               timeout=60)


# -- inside an allocation: srun steps, launcher="auto" -------------------------------------------------

DRIVER = """
import json, os, sys, time
import psutil
from simctl import Experiment, Status, configure_logging

configure_logging()  # a driver script opts in to simctl's messages
root, prog, sleeper, barrier = sys.argv[1:5]
exp = Experiment("alloc", exp_path=root, launcher="auto")
out = {"launcher": exp.launcher_name, "alloc": os.environ["SLURM_JOB_ID"]}
ok = exp.create_model("step one", exp.create_run_settings(exe=sys.executable, exe_args=[prog, "a b", "$X"]))
bad = exp.create_model("fails", exp.create_run_settings(exe=sys.executable, exe_args=["-c", "raise SystemExit(3)"]))
mpi_rs = exp.create_run_settings(exe=sys.executable, exe_args=[prog], run_command="mpirun")
mpi_rs.set_tasks(2)
mpi = exp.create_model("mpi", mpi_rs)
exp.generate(ok, bad, mpi)
exp.start(ok, bad, mpi, block=True)
jobs = exp.controller.jobs
out["models"] = {n: [str(j.status.status), j.status.returncode, j.record.job_id] for n, j in jobs.items()}
out["reports"] = {m.name: open(os.path.join(m.path, m.name + ".out")).read() for m in (ok, mpi)}

pair = exp.create_ensemble("pair", params={"me": [0, 1], "n": [2, 2]}, params_as_args=["me", "n"],
                           perm_strategy="step", run_settings=exp.create_run_settings(exe=sys.executable,
                                                                                   exe_args=[barrier]))
exp.generate(pair)
exp.start(pair, block=True)  # each waits for the other: steps of the allocation run side by side
out["pair"] = [str(s) for s in exp.get_status(pair)]

slow = exp.create_model("sleeper", exp.create_run_settings(exe=sys.executable, exe_args=[sleeper]))
exp.generate(slow)
exp.start(slow, block=False)
pidfile = os.path.join(slow.path, "pid")
while not os.path.exists(pidfile) or not open(pidfile).read():
    time.sleep(0.05)
pid = int(open(pidfile).read())
exp.stop(slow)
out["stopped"] = str(exp.get_status(slow)[0])
end = time.monotonic() + 60
while psutil.pid_exists(pid) and time.monotonic() < end:
    time.sleep(0.05)
out["stopped_pid_alive"] = psutil.pid_exists(pid)
print("RESULT " + json.dumps(out))
"""


def test_inside_an_allocation_models_are_srun_steps_and_auto_picks_slurm(tmp_path):
    driver = script(tmp_path, DRIVER, "driver.py")
    prog = script(tmp_path, REPORT, "report.py")
    sleeper = script(tmp_path, """
        import os, time
        open("pid", "w").write(str(os.getpid()))
        time.sleep(300)
    """, "sleeper.py")
    barrier = script(tmp_path, BARRIER, "barrier.py")
    log = CmdLog(tmp_path / "cmds.log")
    env = no_allocation_env()
    env.update(PATH=f"{RECORDER}{os.pathsep}{env['PATH']}", SIMCTL_CMD_LOG=str(log.path), X="from-env")
    proc = subprocess.run(["salloc", "-N1", "-n2", "-t", "00:10:00", "-J", "simctl-test-alloc",
                           PY, driver, str(tmp_path / "alloc"), prog, sleeper, barrier],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    alloc = result["alloc"]

    # launcher="auto" picked slurm and said it is inside the allocation
    assert result["launcher"] == "slurm"
    assert f"launcher='auto' picked 'slurm': inside slurm allocation {alloc}" in proc.stderr
    models = result["models"]
    assert models["step one"][:2] == ["Completed", 0]
    assert models["fails"][:2] == ["Failed", 3]
    assert models["mpi"][:2] == ["Completed", 0]
    # job steps of the allocation, not batch jobs
    assert all(m[2].startswith("step:") for m in models.values())
    seen = json.loads(result["reports"]["step one"])
    assert seen["SLURM_JOB_ID"] == alloc and seen["SLURM_STEP_ID"] is not None
    assert seen["argv"] == ["a b", "$X"] and seen["X"] == "from-env"
    mpi_lines = [json.loads(ln) for ln in result["reports"]["mpi"].splitlines()]
    assert sorted(r["SLURM_PROCID"] for r in mpi_lines) == ["0", "1"]  # mpirun -n 2 ran two tasks
    assert {r["SLURM_JOB_ID"] for r in mpi_lines} == {alloc}
    assert result["pair"] == ["Completed", "Completed"]
    # stopping a step ends it
    assert result["stopped"] == "Cancelled"
    assert result["stopped_pid_alive"] is False
    # nothing was submitted and no status command was needed: steps are watched as processes
    names = log.names()
    assert not {"sbatch", "squeue", "sacct", "scontrol"} & set(names), names
    assert names.count("srun") >= 3


# -- quoting, names, preview --------------------------------------------------------------------------

NASTY = ["two  spaces", "it's", 'say "hi"', "$HOME", "${X:-default}", "`date`", "back\\slash", "semi;colon",
         "*", "#hash", "%j", "new\nline", ""]


def test_arguments_reach_the_program_unchanged(tmp_path):
    exp = slurm_exp(tmp_path)
    prog = script(tmp_path, REPORT)
    # exe_args, on a model alone (its own batch job) with an environment variable to match
    rs = py_settings(exp, prog, *NASTY, env_vars={"X": "a  $b 'c'"})
    model = exp.create_model("args", rs)
    # parameters as arguments, on an ensemble batch job and on a job array
    ens = exp.create_ensemble("params", params={"p": NASTY[:6], "q": NASTY[6:12]}, params_as_args=["p", "q"],
                              run_settings=py_settings(exp, prog), perm_strategy="step",
                              batch_settings=exp.create_batch_settings(time="00:05:00"))
    arr = exp.create_ensemble("parr", params={"p": NASTY[:2]}, params_as_args=["p"],
                              run_settings=py_settings(exp, prog),
                              batch_settings=exp.create_batch_settings(time="00:05:00", array=True))
    exp.generate(model, ens, arr)
    exp.start(model, ens, arr, block=True)

    assert exp.get_status(model, ens, arr) == [Status.COMPLETED] * 9
    (seen,) = report_of(model)
    assert seen["argv"] == NASTY
    assert seen["X"] == "a  $b 'c'"
    for m in ens.models:
        assert report_of(m)[0]["argv"] == ["-p", m.params["p"], "-q", m.params["q"]]
    for m in arr.models:
        assert report_of(m)[0]["argv"] == ["-p", m.params["p"]]
    assert not (Path(model.path) / "HOME").exists()


def test_job_names_and_paths_are_made_safe(tmp_path):
    exp = slurm_exp(tmp_path)
    odd = "odd name; $(touch pwned) 'q' \"d\" #1 %j"
    model = exp.create_model(odd, py_settings(exp, script(tmp_path, REPORT)))
    ens = exp.create_ensemble("ens #2 %x", replicas=2, run_settings=py_settings(exp, script(tmp_path, REPORT)),
                              batch_settings=exp.create_batch_settings(
                                  time="00:05:00", batch_args={"comment": "a b #c \"d\" 'e' $f"}))
    exp.generate(model, ens)
    exp.start(model, ens, block=True)

    assert exp.get_status(model, ens) == [Status.COMPLETED] * 3
    job = job_of(exp, model)
    name = squeue_field(job, "Name")
    assert name == simctl.make_plugins().get("launcher", "slurm")().job_name(odd)
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    # Slurm wrote the job's own output where asked: the '%j' in the path was not expanded
    assert (Path(model.path) / f"{odd}.batch.out").exists()
    assert (Path(model.path) / f"{odd}.batch.err").read_text() == ""
    assert report_of(model)[0]["cwd"] == model.path
    assert not list(tmp_path.rglob("pwned"))
    ens_job = job_of(exp, ens.models[0])
    assert squeue_field(ens_job, "Comment") == "a b #c \"d\" 'e' $f"  # the batch_arg reached sbatch whole
    assert (Path(ens.path) / "ens #2 %x.batch.out").exists()


def test_preview_shows_the_exact_batch_script(tmp_path, capsys):
    exp = slurm_exp(tmp_path)
    rs = py_settings(exp, script(tmp_path, REPORT), "a b")
    ens = exp.create_ensemble("ens", params={"v": ["x y", "$z"]}, params_as_args=["v"], run_settings=rs,
                              batch_settings=exp.create_batch_settings(nodes=1, time="00:05:00"))
    model = exp.create_model("solo", rs)
    exp.generate(ens, model)

    text = exp.preview(ens, model)
    assert capsys.readouterr().out.strip() == text.strip()
    exp.start(ens, model, block=True)
    assert exp.get_status(ens, model) == [Status.COMPLETED] * 3

    for entity in (ens, model):
        (path,) = Path(entity.path).glob(f".simctl-batch/{entity.name}-*/job.sh")
        submitted = path.read_text()
        # the preview holds the very script that was submitted, and the very command
        assert submitted in text
        assert f"# submitted with: sbatch --parsable {path}\n" in text
        assert submitted.startswith("#!/bin/bash\n#SBATCH --job-name=")
    assert "#SBATCH --nodes=1\n#SBATCH --time=00:05:00\n" in text
    assert "srun " in text and "-v 'x y'" in text and "-v '$z'" in text


def test_partition_time_and_cpus_per_task_reach_sbatch(tmp_path):
    exp = slurm_exp(tmp_path)
    partition = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True).stdout.split()[0]
    bs = exp.create_batch_settings(nodes=1, time=2, queue=partition)
    bs.set_cpus_per_task(2)
    model = exp.create_model("part", py_settings(exp, script(tmp_path, REPORT)), batch_settings=bs)
    exp.generate(model)
    exp.start(model, block=True)
    assert exp.get_status(model) == [Status.COMPLETED]
    job = job_of(exp, model)
    assert squeue_field(job, "Partition") == partition
    assert squeue_field(job, "TimeLimit") == "2:00"
    assert squeue_field(job, "cpus-per-task") == "2"


@pytest.fixture(autouse=True)
def _no_leftover_jobs(tmp_path):
    """Cancel whatever a failing test left in the queue (by the ids its manifest recorded)."""
    yield
    ids = set()
    for manifest in tmp_path.rglob("manifest.json"):
        try:
            for rec in json.loads(manifest.read_text()).get("jobs", []):
                jid = rec.get("job_id") or ""
                if jid and not jid.startswith("step:"):
                    ids.add(jid.rpartition(":")[0])
        except (ValueError, OSError):
            pass
    scancel_quietly(*sorted(ids))
