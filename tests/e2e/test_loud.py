"""The day after the run (issue 17): failures said loudly with where to look,
``simctl logs``, ``simctl status``'s choices, re-running what failed from a
new driver and from the shell, each run keeping its own output, and the
experiment found from the current directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from _lifecycle_helpers import SIMCTL, gone, kill_pids, run_driver, wait_until, write_script

from simctl.core import manifest as mf

#: a member that fails while the file ``fail`` beside the driver names it
MEMBER = """
    import os, sys
    me = os.path.basename(os.getcwd())
    print("output of", me, "run in", os.getcwd())
    failing = open(sys.argv[1]).read().split() if os.path.exists(sys.argv[1]) else []
    if me in failing:
        print("boom: " + me + " could not converge", file=sys.stderr)
        sys.exit(3)
"""

SWEEP = """
    import os, sys
    import simctl
    exp = simctl.Experiment("loud", exp_path="exp", launcher="local")
    rs = exp.create_run_settings(sys.executable, exe_args=[os.path.abspath("member.py"), os.path.abspath("fail")])
    ens = exp.create_ensemble("sweep", params={{"x": [0, 1, 2]}}, run_settings=rs)
    {body}
"""


def _write(tmp_path: Path, failing: str = "sweep_1") -> None:
    write_script(tmp_path / "member.py", MEMBER)
    (tmp_path / "fail").write_text(failing)


def _driver(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    res = run_driver(tmp_path, SWEEP.format(body=body))
    assert isinstance(res, subprocess.CompletedProcess)
    return res


def _simctl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIMCTL, *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="250"))


def test_a_sweep_whose_members_fail_says_so_with_the_logs(tmp_path):
    _write(tmp_path)
    res = _driver(tmp_path, """
    exp.generate(ens)
    exp.start(ens)
    print("SUMMARY"); print(exp.summary())
    exp.start(ens, block=False); exp.poll(interval=0.01)
    try:
        exp.start(ens, raise_on_failure=True)
    except simctl.JobsFailed as exc:
        print("RAISED", [(r.key, r.returncode, os.path.basename(r.err)) for r in exc.jobs])
    """)
    assert res.returncode == 0, res.stderr
    err = res.stderr
    # the warning reaches the script's user with no logging set up, at the driver's line
    assert "driver.py:8: SimctlWarning: 1 of 3 job(s) failed:" in err, err
    log = tmp_path / "exp" / "sweep" / "sweep_1" / "sweep_1.err"
    assert f"log: {log}" in err and "| boom: sweep_1 could not converge" in err
    assert "sweep/sweep_1: exited with code 3" in err
    summary = res.stdout.split("SUMMARY")[1]
    assert "1 of 3 job(s) failed" in summary and str(log) in summary
    # poll(verbose=True) prints, and says how it ended
    assert "loud: 3 job(s) finished: 2 without failing, 1 failed" in err
    assert "RAISED [('sweep/sweep_1', 3, 'sweep_1.err')]" in res.stdout


def test_status_logs_and_stop_find_the_experiment_from_the_current_directory(tmp_path):
    _write(tmp_path)
    assert _driver(tmp_path, "exp.generate(ens); exp.start(ens); exp.start(ens['sweep_0'])").returncode == 0
    inside = tmp_path / "exp" / "sweep" / "sweep_2"
    for cmd in ([], ["status"], ["logs"], ["stop"], ["rerun"], ["store"], ["store", "ls"], ["plugins", "list"]):
        helped = _simctl(tmp_path, *cmd, "-h")
        assert helped.returncode == 0 and "Usage:" in helped.stdout, (cmd, helped.stderr)

    status = _simctl(inside, "status")  # no EXP_PATH: found upwards, as git finds its repository
    assert status.returncode == 0, status.stderr
    rows = [ln for ln in status.stdout.splitlines() if ln.count("│") > 3]
    # the latest run of each job, in the order they were first launched
    assert [(r.split("│")[1].strip(), r.split("│")[4].strip()) for r in rows] == [
        ("sweep_0", "2"), ("sweep_1", "1"), ("sweep_2", "1")]
    assert "latest run of" in " ".join(status.stdout.split())  # (a long path wraps the title)
    assert all(r.split("│")[5].strip().endswith("s") for r in rows)  # durations have a unit
    assert "1 of 3 job(s) failed" in status.stderr and "sweep_1.err" in status.stderr
    every = _simctl(inside, "status", "--all")
    assert sum(ln.count("sweep_0") for ln in every.stdout.splitlines()) == 2
    failed = _simctl(tmp_path, "status", "exp", "--failed", "--paths")
    rows = [ln for ln in failed.stdout.splitlines() if ln.count("│") > 3 and ln.split("│")[1].strip()]
    assert [r.split("│")[1].strip() for r in rows] == ["sweep_1"]
    assert "Path" in failed.stdout and str(tmp_path / "exp" / "sweep" / "sweep_1") in rows[0]
    running = _simctl(inside, "status", "--running")
    assert [ln for ln in running.stdout.splitlines() if "sweep_" in ln] == []

    logs = _simctl(inside.parent, "logs", "sweep_1", "--err")  # a member's name, though a directory here too
    assert logs.returncode == 0 and logs.stdout == "boom: sweep_1 could not converge\n", logs.stderr
    one = _simctl(tmp_path, "logs", "exp", "sweep/sweep_2")
    assert one.stdout == f"output of sweep_2 run in {tmp_path / 'exp' / 'sweep' / 'sweep_2'}\n"
    every_member = _simctl(inside, "logs", "sweep", "-f")  # -f ends: every job has ended
    assert every_member.stdout.count("output of sweep_") == 3 and "==> " in every_member.stdout
    unknown = _simctl(inside, "logs", "nope")
    assert unknown.returncode != 0 and "no job or entity named 'nope'" in unknown.stderr
    nowhere = _simctl(tmp_path, "status")
    assert nowhere.returncode != 0 and "no simctl experiment here" in nowhere.stderr

    stop = _simctl(inside, "stop")
    assert stop.returncode == 0 and "nothing to stop: no job of loud" in stop.stdout, stop.stderr


def test_a_new_driver_sees_the_failures_and_reruns_only_them_in_their_own_directories(tmp_path):
    _write(tmp_path)
    assert _driver(tmp_path, "exp.generate(ens); exp.start(ens)").returncode == 0
    (tmp_path / "fail").write_text("")
    res = _driver(tmp_path, """
    print("BEFORE", [s.value for s in exp.get_status(ens)])
    exp.start(ens, only="failed")
    print("AFTER", [s.value for s in exp.get_status(ens)])
    print("LOGS", exp.logs(ens["sweep_1"]).strip())
    exp.start(ens, only="failed")
    """)
    assert res.returncode == 0, res.stderr
    assert "BEFORE ['Completed', 'Failed', 'Completed']" in res.stdout  # the manifest's, not NEW
    assert "AFTER ['Completed', 'Completed', 'Completed']" in res.stdout
    member = tmp_path / "exp" / "sweep" / "sweep_1"
    assert f"LOGS output of sweep_1 run in {member}" in res.stdout  # its own directory, not the current one
    assert not (tmp_path / "sweep_1.out").exists()
    assert "nothing to re-run" in res.stderr
    # each run kept its own output: the failed run's as <name>.<stream>.<run>
    assert (member / "sweep_1.err.1").read_text() == "boom: sweep_1 could not converge\n"
    assert (member / "sweep_1.err").read_text() == ""
    man = mf.load(str(tmp_path / "exp"))
    assert man is not None
    runs = [(r.run, r.status.value, os.path.basename(r.err or "")) for r in man.jobs if r.name == "sweep_1"]
    assert runs == [(1, "Failed", "sweep_1.err.1"), (2, "Completed", "sweep_1.err")]
    assert [r.run for r in man.jobs if r.name == "sweep_0"] == [1]


def test_generate_of_one_member_writes_its_own_directory(tmp_path):
    _write(tmp_path, failing="")
    res = _driver(tmp_path, """
    print("DIRS", exp.generate(ens["sweep_2"]))
    exp.start(ens["sweep_2"])
    exp.start(ens["sweep_0"])
    """)
    assert res.returncode == 0, res.stderr
    assert f"DIRS ['{tmp_path / 'exp' / 'sweep' / 'sweep_2'}']" in res.stdout
    assert (tmp_path / "exp" / "sweep" / "sweep_2" / "sweep_2.out").read_text().startswith("output of sweep_2")
    # a member never generated (and with no files to receive) runs where the driver runs, its output files in
    # its path <exp_path>/<ensemble>/<member> (SmartSim's, made at start; issue 19), not in the current directory
    assert (tmp_path / "exp" / "sweep" / "sweep_0" / "sweep_0.out").read_text() == \
        f"output of {tmp_path.name} run in {tmp_path}\n"
    assert not (tmp_path / "sweep_0.out").exists()


def test_simctl_rerun_failed_after_the_driver_is_gone(tmp_path):
    _write(tmp_path, failing="sweep_0 sweep_2")
    assert _driver(tmp_path, "exp.generate(ens); exp.start(ens)").returncode == 0
    again = _simctl(tmp_path, "rerun", "exp", "--failed")  # still failing
    assert again.returncode == 1 and "2 of 2 job(s) failed" in again.stderr and "sweep_0.err" in again.stderr
    (tmp_path / "fail").write_text("")
    fixed = _simctl(tmp_path / "exp", "rerun", "--failed")
    assert fixed.returncode == 0, fixed.stderr
    assert "re-running 2 job(s): sweep/sweep_0, sweep/sweep_2" in fixed.stderr
    man = mf.load(str(tmp_path / "exp"))
    assert man is not None
    latest = man.latest()
    assert {k: (r.run, r.status.value) for k, r in latest.items()} == {
        "sweep/sweep_0": (3, "Completed"), "sweep/sweep_1": (1, "Completed"), "sweep/sweep_2": (3, "Completed")}
    assert latest["sweep/sweep_0"].path == str(tmp_path / "exp" / "sweep" / "sweep_0")
    member = tmp_path / "exp" / "sweep" / "sweep_0"
    assert sorted(p.name for p in member.glob("sweep_0.err*")) == ["sweep_0.err", "sweep_0.err.1", "sweep_0.err.2"]
    nothing = _simctl(tmp_path, "rerun", "exp", "--failed")
    assert nothing.returncode == 0 and "nothing to re-run" in nothing.stderr


#: fails its first two runs (it counts them in its run directory)
FLAKY = """
    import os, sys
    with open("attempts", "a") as fh:
        fh.write("x")
    n = len(open("attempts").read())
    print("attempt", n)
    sys.exit(0 if n >= 3 or not os.getcwd().endswith("sweep_1") else 5)
"""


def test_max_retries_starts_a_failed_member_again_in_its_directory(tmp_path):
    write_script(tmp_path / "member.py", FLAKY)
    res = _driver(tmp_path, """
    exp.generate(ens)
    try:
        exp.start(ens, max_retries=1, raise_on_failure=True)
    except simctl.JobsFailed as exc:
        print("STILL", [(r.key, r.run) for r in exc.jobs])
    exp.start(ens, only="failed", max_retries=2)
    print("FINALLY", [s.value for s in exp.get_status(ens)])
    """)
    assert res.returncode == 0, res.stderr
    assert "STILL [('sweep/sweep_1', 2)]" in res.stdout  # one retry: still failing
    assert "starting them again (retry 1 of 1): sweep/sweep_1" in res.stderr
    assert "FINALLY ['Completed', 'Completed', 'Completed']" in res.stdout  # its third run completed
    member = tmp_path / "exp" / "sweep" / "sweep_1"
    assert (member / "attempts").read_text() == "xxx" and (member / "sweep_1.out").read_text() == "attempt 3\n"
    assert (member / "sweep_1.out.1").read_text() == "attempt 1\n"
    assert (tmp_path / "exp" / "sweep" / "sweep_0" / "attempts").read_text() == "x"  # not retried: it completed
    assert "SimctlWarning" not in res.stderr


def test_simctl_stop_says_what_it_stopped(tmp_path):
    write_script(tmp_path / "member.py", """
    import os, time
    open("pid", "w").write(str(os.getpid()))
    time.sleep(300)
    """)
    res = _driver(tmp_path, """
    import signal, time
    exp.generate(ens)
    exp.start(ens["sweep_1"], block=False)
    while not os.path.exists("exp/sweep/sweep_1/pid"):
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)  # the driver dies: its job is left running
    """)
    assert res.returncode == -9
    pid = int((tmp_path / "exp" / "sweep" / "sweep_1" / "pid").read_text())
    try:
        stop = _simctl(tmp_path / "exp", "stop")
        assert stop.returncode == 0, stop.stderr
        assert "stopped 1 job(s): sweep/sweep_1" in stop.stdout
        wait_until(lambda: gone(pid), "the job to be stopped")
        again = _simctl(tmp_path / "exp", "stop")
        assert "nothing to stop" in again.stdout
    finally:
        kill_pids([pid])


def test_simctl_logs_follows_a_running_job_until_it_ends(tmp_path):
    write_script(tmp_path / "member.py", """
    import os, time
    print("first", flush=True)
    while not os.path.exists(os.path.join(os.path.dirname(os.getcwd()), "go")):
        time.sleep(0.05)
    print("second", flush=True)
    """)
    driver = run_driver(tmp_path, SWEEP.format(body="exp.generate(ens); exp.start(ens['sweep_0'])"), wait=False)
    assert isinstance(driver, subprocess.Popen)
    try:
        out = tmp_path / "exp" / "sweep" / "sweep_0" / "sweep_0.out"
        wait_until(lambda: out.exists() and "first" in out.read_text(), "the job to print its first line")
        follow = subprocess.Popen([SIMCTL, "logs", str(tmp_path / "exp"), "sweep_0", "-f"], stdout=subprocess.PIPE,
                                  text=True)
        assert follow.stdout is not None
        assert follow.stdout.readline() == "first\n"  # printed while the job still runs
        (tmp_path / "exp" / "sweep" / "go").write_text("")
        rest, _ = follow.communicate()
        assert rest == "second\n" and follow.returncode == 0  # it ended with the job
        driver.communicate()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()


def test_a_new_driver_runs_a_generated_ensemble_again_in_its_members_directories(tmp_path):
    _write(tmp_path, failing="")
    assert _driver(tmp_path, "exp.generate(ens); exp.start(ens)").returncode == 0
    assert _driver(tmp_path, "exp.start(ens)").returncode == 0  # no generate in this driver
    assert not list(tmp_path.glob("sweep_*.out"))  # never in the current directory
    for i in range(3):
        member = tmp_path / "exp" / "sweep" / f"sweep_{i}"
        assert (member / f"sweep_{i}.out").read_text() == f"output of sweep_{i} run in {member}\n"
        assert (member / f"sweep_{i}.out.1").exists()  # the first run's output, kept
