"""The ``local`` launcher plugin: process trees, stop with SIGTERM then SIGKILL,
the concurrency limit, statuses and faults, with real processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time

import pytest
from _lifecycle_helpers import (
    PY,
    code_settings,
    gone,
    kill_pids,
    load_manifest,
    make_exp,
    read_pids,
    wait_until,
    write_script,
)

import simctl
from simctl import Status

# -- the launcher as a plugin ---------------------------------------------------------------------------


def test_local_is_registered_through_the_entry_point():
    plugs = simctl.make_plugins()
    assert "local" in plugs.names("launcher")
    cls = plugs.get("launcher", "local")
    assert issubclass(cls, simctl.Launcher) and cls.name == "local"
    rec = [r for r in plugs.records if "local" in r.provides.get("launcher", [])]
    assert rec and rec[0].builtin and rec[0].distribution == "simctl-hpc"


def test_local_rejects_run_commands_and_batch_settings(tmp_path):
    exp = make_exp(tmp_path)
    with pytest.raises(simctl.ConfigError, match="does not support run command 'srun'"):
        exp.create_run_settings("true", run_command="srun")
    with pytest.raises(simctl.ConfigError, match="no batch system"):
        exp.create_batch_settings(nodes=1)
    assert exp.create_run_settings("true").run_command is None


# -- statuses and faults ------------------------------------------------------------------------------------


def test_exit_code_other_than_zero_is_failed_with_the_code(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("three", code_settings(exp, "import sys; sys.exit(3)"), path=str(tmp_path))
    exp.start(model)
    assert exp.get_status(model) == [Status.FAILED]
    rec = exp.summary_data()[0]
    assert rec.returncode == 3 and "3" in rec.reason


def test_process_killed_by_a_signal_names_the_signal(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("sig", code_settings(exp, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
                             path=str(tmp_path))
    seg = exp.create_model("segv", code_settings(exp, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"),
                           path=str(tmp_path))
    exp.start(model, seg)
    assert exp.get_status(model, seg) == [Status.FAILED, Status.FAILED]
    by_name = {r.name: r for r in exp.summary_data()}
    assert by_name["sig"].returncode == -signal.SIGKILL and "SIGKILL" in by_name["sig"].reason
    assert by_name["segv"].returncode == -signal.SIGSEGV and "SIGSEGV" in by_name["segv"].reason


def test_missing_executable_fails_with_a_reason_and_the_driver_goes_on(tmp_path):
    exp = make_exp(tmp_path)
    missing = exp.create_model("nope", exp.create_run_settings("simctl-no-such-program-xyz"), path=str(tmp_path))
    missing_path = exp.create_model("nope2", exp.create_run_settings(str(tmp_path / "no" / "such")),
                                    path=str(tmp_path))
    fine = exp.create_model("fine", exp.create_run_settings("true"), path=str(tmp_path))
    exp.start(missing, missing_path, fine)
    assert exp.get_status(missing, missing_path, fine) == [Status.FAILED, Status.FAILED, Status.COMPLETED]
    by_name = {r.name: r for r in exp.summary_data()}
    assert "simctl-no-such-program-xyz" in by_name["nope"].reason and "not found" in by_name["nope"].reason
    assert str(tmp_path / "no" / "such") in by_name["nope2"].reason
    assert by_name["nope"].returncode is None
    assert exp.finished(missing)


def test_executable_without_permission_fails_with_a_reason(tmp_path):
    prog = tmp_path / "not-executable.sh"
    prog.write_text("#!/bin/sh\necho hi\n")
    prog.chmod(0o644)
    exp = make_exp(tmp_path)
    model = exp.create_model("noperm", exp.create_run_settings(str(prog)), path=str(tmp_path))
    exp.start(model)
    assert exp.get_status(model) == [Status.FAILED]
    assert "ermission" in exp.summary_data()[0].reason


def test_working_directory_that_vanished_fails_with_a_reason(tmp_path):
    exp = make_exp(tmp_path)
    where = tmp_path / "vanishing"
    where.mkdir()
    model = exp.create_model("lost", exp.create_run_settings("true"), path=str(where))
    where.rmdir()
    exp.start(model)
    assert exp.get_status(model) == [Status.FAILED]
    rec = exp.summary_data()[0]
    assert str(where) in rec.reason and "does not exist" in rec.reason
    assert not where.exists()  # nothing was created in its place


def test_generated_directory_removed_before_start(tmp_path):
    exp = make_exp(tmp_path)
    ens = exp.create_ensemble("gone", replicas=2, run_settings=exp.create_run_settings("true"))
    exp.generate(ens)
    import shutil
    shutil.rmtree(os.path.join(exp.exp_path, "gone", "gone_1"))
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED, Status.FAILED]
    assert "does not exist" in exp.summary_data()[1].reason


# -- stop -------------------------------------------------------------------------------------------------------


def test_stop_cancels_with_the_signal_as_return_code(tmp_path):
    exp = make_exp(tmp_path, launcher_options={"stop_grace": 5})
    model = exp.create_model("sleeper", exp.create_run_settings("sleep", exe_args="30"), path=str(tmp_path))
    exp.start(model, block=False)
    wait_until(lambda: exp.get_status(model) == [Status.RUNNING], "RUNNING")
    exp.stop(model)
    assert exp.get_status(model) == [Status.CANCELLED]
    rec = exp.summary_data()[0]
    assert rec.returncode == -signal.SIGTERM
    assert rec.reason
    assert exp.finished(model)
    man = load_manifest(exp)
    assert man.jobs[0].status is Status.CANCELLED


TREE_CHILD = """
    import os, subprocess, sys, time
    pidfile = sys.argv[1]
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    same_group = subprocess.Popen(sleeper)
    new_session = subprocess.Popen(sleeper, start_new_session=True)   # setsid in the grandchild
    nested = subprocess.Popen([sys.executable, "-c",
        "import subprocess, sys, time, os; os.setsid(); "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "open(sys.argv[1], 'a').write(f'{os.getpid()} {p.pid} '); time.sleep(60)", pidfile + ".nested"])
    while not os.path.exists(pidfile + ".nested") or len(open(pidfile + ".nested").read().split()) < 2:
        time.sleep(0.01)
    pids = [os.getpid(), same_group.pid, new_session.pid] + open(pidfile + ".nested").read().split()
    with open(pidfile + ".tmp", "w") as fh:
        fh.write(" ".join(map(str, pids)))
    os.rename(pidfile + ".tmp", pidfile)
    print("tree ready", flush=True)
    time.sleep(60)
"""


def test_stop_ends_the_whole_process_tree_including_setsid_grandchildren(tmp_path):
    script = write_script(tmp_path / "tree.py", TREE_CHILD)
    pidfile = tmp_path / "pids"
    exp = make_exp(tmp_path, launcher_options={"stop_grace": 1})
    model = exp.create_model("tree", exp.create_run_settings(PY, exe_args=[str(script), str(pidfile)]),
                             path=str(tmp_path))
    exp.start(model, block=False)
    pids = wait_until(lambda: read_pids(pidfile), "the tree to be up")
    try:
        assert len(pids) == 5
        assert all(not gone(p) for p in pids)
        sessions = {os.getsid(p) for p in pids}
        assert len(sessions) >= 3  # the tree really spans several sessions
        exp.stop(model)
        assert exp.get_status(model) == [Status.CANCELLED]
        still = [p for p in pids if not gone(p)]
        assert still == []
    finally:
        kill_pids(pids)


def test_sigterm_then_sigkill_after_the_grace_period(tmp_path):
    exp = make_exp(tmp_path, launcher_options={"stop_grace": 0.5})
    ready = tmp_path / "ready"
    rs = code_settings(exp, f"""
        import os, signal, time
        signal.signal(signal.SIGTERM, lambda *a: open({str(tmp_path / 'got-term')!r}, 'w').write('x'))
        open({str(ready)!r}, 'w').write(str(os.getpid()))
        while True:
            time.sleep(0.05)
    """)
    model = exp.create_model("stubborn", rs, path=str(tmp_path))
    exp.start(model, block=False)
    pid = int(wait_until(lambda: ready.exists() and ready.read_text(), "the child to install its handler"))
    exp.stop(model)
    assert (tmp_path / "got-term").exists()  # it was asked politely first
    assert gone(pid)
    assert exp.get_status(model) == [Status.CANCELLED]
    assert exp.summary_data()[0].returncode == -signal.SIGKILL


def test_stop_kills_a_grandchild_that_outlives_its_parent_and_ignores_sigterm(tmp_path):
    exp = make_exp(tmp_path, launcher_options={"stop_grace": 0.5})
    pidfile = tmp_path / "gc"
    rs = code_settings(exp, f"""
        import os, subprocess, sys, time
        gc = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "open({str(pidfile)!r} + '.tmp', 'w').write('x'); time.sleep(60)"])
        while not os.path.exists({str(pidfile)!r} + ".tmp"):
            time.sleep(0.01)
        open({str(pidfile)!r}, "w").write(str(gc.pid))
        time.sleep(60)   # the parent itself dies on SIGTERM
    """)
    model = exp.create_model("orphaner", rs, path=str(tmp_path))
    exp.start(model, block=False)
    gc = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), "the grandchild to ignore SIGTERM"))
    try:
        exp.stop(model)
        assert exp.get_status(model) == [Status.CANCELLED]
        assert exp.summary_data()[0].returncode == -signal.SIGTERM  # the parent went at once
        assert gone(gc)  # the grandchild did not survive its SIGKILL
    finally:
        kill_pids([gc])


def test_stop_of_a_process_that_exits_on_sigterm_with_its_own_code(tmp_path):
    exp = make_exp(tmp_path)
    ready = tmp_path / "ready"
    rs = code_settings(exp, f"""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))
        open({str(ready)!r}, 'w').write('x')
        time.sleep(60)
    """)
    model = exp.create_model("polite", rs, path=str(tmp_path))
    exp.start(model, block=False)
    wait_until(ready.exists, "ready")
    exp.stop(model)
    assert exp.get_status(model) == [Status.CANCELLED]
    assert exp.summary_data()[0].returncode == 7


def test_stop_of_an_ensemble_cancels_running_and_queued_members(tmp_path):
    exp = make_exp(tmp_path, launcher_options={"max_concurrent": 2})
    ens = exp.create_ensemble("held", replicas=5, run_settings=exp.create_run_settings("sleep", exe_args="30"),
                              path=str(tmp_path))
    exp.start(ens, block=False)
    wait_until(lambda: exp.get_status(ens).count(Status.RUNNING) == 2, "two members RUNNING")
    exp.stop(ens)
    statuses = exp.get_status(ens)
    assert statuses[:2] == [Status.CANCELLED] * 2
    # the ones still waiting their turn never started
    assert statuses[2:] == [Status.NEVER_STARTED] * 3
    assert all("before it started" in r.reason for r in exp.summary_data()[2:])
    assert exp.finished(ens)
    time.sleep(0.3)  # nothing queued starts after the stop
    assert exp.get_status(ens)[2:] == [Status.NEVER_STARTED] * 3


def test_stop_after_completion_leaves_the_status(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("quick", exp.create_run_settings("true"), path=str(tmp_path))
    exp.start(model)
    exp.stop(model)
    assert exp.get_status(model) == [Status.COMPLETED]


# -- concurrency limit ------------------------------------------------------------------------------------------------


def test_concurrency_limit_runs_at_most_n_at_once(tmp_path):
    script = write_script(tmp_path / "span.py", """
        import os, sys, time
        start = time.time()
        time.sleep(0.3)
        with open(sys.argv[1], "w") as fh:
            fh.write(f"{start} {time.time()}")
    """)
    exp = make_exp(tmp_path, launcher_options={"max_concurrent": 2})
    members = []
    for i in range(6):
        rs = exp.create_run_settings(PY, exe_args=[str(script), str(tmp_path / f"span{i}")])
        members.append(exp.create_model(f"c{i}", rs, path=str(tmp_path)))
    ens = exp.create_ensemble("conc")
    for m in members:
        ens.add_model(m)
    exp.start(ens, block=False)
    seen: list[list[Status]] = []
    while not exp.finished(ens):
        seen.append(exp.get_status(ens))
        time.sleep(0.01)
    assert exp.get_status(ens) == [Status.COMPLETED] * 6
    assert max(s.count(Status.RUNNING) for s in seen) <= 2
    assert any(s.count(Status.QUEUED) >= 3 and Status.RUNNING in s for s in seen)
    spans = [tuple(map(float, (tmp_path / f"span{i}").read_text().split())) for i in range(6)]
    for t0, _ in spans:
        overlapping = sum(1 for a, b in spans if a <= t0 <= b)
        assert overlapping <= 2
    # the launcher itself never had more than two processes
    assert exp.launcher.max_concurrent == 2


def test_default_concurrency_limit_is_bounded_by_open_files():
    import resource

    from simctl.core.processes import default_max_concurrent

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = default_max_concurrent()
    assert 1 <= n <= 512 and n <= max(1, soft // 4)


def test_two_hundred_members_of_true_all_complete(tmp_path):
    exp = make_exp(tmp_path)
    ens = exp.create_ensemble("many", replicas=200, run_settings=exp.create_run_settings("true"),
                              path=str(tmp_path))
    exp.start(ens, block=True)
    statuses = exp.get_status(ens)
    assert len(statuses) == 200 and set(statuses) == {Status.COMPLETED}
    man = load_manifest(exp)
    assert len(man.jobs) == 200 and {j.status for j in man.jobs} == {Status.COMPLETED}
    assert {j.returncode for j in man.jobs} == {0}
    recorder = exp.plugins.pm.get_plugin("recorder")
    assert sorted(n for n, _ in recorder.finished) == sorted(m.name for m in ens)


def test_many_members_with_a_small_limit_and_mixed_outcomes(tmp_path):
    exp = make_exp(tmp_path, launcher_options={"max_concurrent": 3})
    codes = [0, 1, 0, 2, 0, 0, 3, 0, 0, 0]
    ens = exp.create_ensemble("mixed")
    for i, code in enumerate(codes):
        ens.add_model(exp.create_model(f"mixed_{i}", exp.create_run_settings("sh", exe_args=["-c", f"exit {code}"]),
                                       path=str(tmp_path)))
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED if c == 0 else Status.FAILED for c in codes]
    assert [r.returncode for r in exp.summary_data()] == codes


def test_processes_run_in_their_own_process_group(tmp_path):
    exp = make_exp(tmp_path)
    code = "import os; print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid())"
    model = exp.create_model("pg", code_settings(exp, code), path=str(tmp_path))
    exp.start(model)
    assert (tmp_path / "pg.out").read_text() == "True True\n"


def test_exit_is_noticed_by_a_wakeup_not_by_polling(tmp_path):
    """The reaper wakes the monitor when a local process exits: with polling
    turned down to once an hour, a finish is still seen (a broken wakeup would
    leave the model RUNNING and this test would give up waiting)."""
    exp = make_exp(tmp_path)
    exp.launcher.poll_bounds = (3600.0, 3600.0)
    gate = tmp_path / "gate"
    rs = code_settings(exp, f"""
        import os, time
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.02)
    """)
    model = exp.create_model("wake", rs, path=str(tmp_path))
    # a blocking start, in a thread so that the test can open the gate
    blocking = threading.Thread(target=exp.start, args=(model,), kwargs={"block": True}, daemon=True)
    blocking.start()
    try:
        wait_until(lambda: exp.get_status(model) == [Status.RUNNING], "RUNNING", timeout=30)
        assert blocking.is_alive()  # start(block=True) is waiting
        gate.write_text("")
        blocking.join(30)
        assert not blocking.is_alive(), "start(block=True) was not woken by the exit"
        assert exp.get_status(model) == [Status.COMPLETED]
    finally:
        gate.write_text("")


def test_without_pidfds_exits_are_polled_and_stop_still_works(tmp_path):
    """Where os.pidfd_open is missing (macOS, old kernels) or out of
    descriptors, the reaper polls instead: same statuses, same stop."""
    exp = make_exp(tmp_path, launcher_options={"max_concurrent": 2, "stop_grace": 0.5})
    exp.launcher.use_pidfd = False
    ens = exp.create_ensemble("poll", replicas=5, run_settings=exp.create_run_settings("true"), path=str(tmp_path))
    bad = exp.create_model("pbad", exp.create_run_settings("sh", exe_args=["-c", "exit 6"]), path=str(tmp_path))
    exp.start(ens, bad)
    assert exp.get_status(ens, bad) == [Status.COMPLETED] * 5 + [Status.FAILED]
    assert exp.summary_data()[-1].returncode == 6
    sleeper = exp.create_model("psleep", exp.create_run_settings("sleep", exe_args="30"), path=str(tmp_path))
    exp.start(sleeper, block=False)
    wait_until(lambda: exp.get_status(sleeper) == [Status.RUNNING], "RUNNING")
    exp.stop(sleeper)
    assert exp.get_status(sleeper) == [Status.CANCELLED]
    assert exp.summary_data()[-1].returncode == -signal.SIGTERM


def test_bad_characters_in_arguments_fail_the_model_not_the_driver(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("nul", exp.create_run_settings("echo", exe_args=["a\0b"]), path=str(tmp_path))
    ok = exp.create_model("fine", exp.create_run_settings("true"), path=str(tmp_path))
    exp.start(model, ok)
    assert exp.get_status(model, ok) == [Status.FAILED, Status.COMPLETED]
    assert "null" in exp.summary_data()[0].reason


def test_unwritable_working_directory_fails_with_a_reason(tmp_path):
    where = tmp_path / "ro"
    where.mkdir()
    (where / "ro.out").mkdir()  # the output file cannot be created: a directory is in its place
    exp = make_exp(tmp_path)
    model = exp.create_model("ro", exp.create_run_settings("true"), path=str(where))
    exp.start(model)
    assert exp.get_status(model) == [Status.FAILED]
    assert "ro.out" in exp.summary_data()[0].reason


# -- nothing escapes (issue 16) -------------------------------------------------------------------------------

# A double-forked daemon; the first process exits only once the daemon has written its pid (appended:
# several may share the file), so the job cannot end, and have its leftover stopped, before that.
DAEMON = """
import os, sys, time
r, w = os.pipe()
if os.fork():
    os.close(w)
    os.read(r, 1)
    sys.exit(0)
os.setsid()
if os.fork():
    sys.exit(0)
with open(sys.argv[1], "a") as out:
    out.write(f"{os.getpid()}\\n")
os.write(w, b"x")
time.sleep(300)
"""


def test_a_model_that_leaves_a_daemon_is_not_completed_while_it_lives_and_says_so(tmp_path):
    exp = make_exp(tmp_path)
    daemon = write_script(tmp_path / "daemon.py", DAEMON)
    pidfile = tmp_path / "daemon.pid"
    model = exp.create_model("m", code_settings(
        exp, f"import subprocess, sys; subprocess.run([sys.executable, {str(daemon)!r}, {str(pidfile)!r}])"),
        path=str(tmp_path))
    exp.start(model)  # blocks until the model is over: its process and the daemon it left
    pid = int(pidfile.read_text())
    assert gone(pid)
    assert exp.get_status(model) == [Status.COMPLETED]
    rec = exp.summary_data()[0]
    assert rec.returncode == 0
    # the daemon (and, if it had not exited yet, the fork between it and the model)
    assert re.search(r"it left [12] process\(es\) running when it exited, stopped then: ", rec.reason), rec.reason
    assert f"{pid} (python" in rec.reason


def test_a_model_without_leftovers_completes_with_no_reason(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("m", code_settings(exp, "import subprocess; subprocess.run(['true'])"),
                             path=str(tmp_path))
    exp.start(model)
    rec = exp.summary_data()[0]
    assert (rec.status, rec.reason) == (Status.COMPLETED, "")


def test_where_there_is_no_proc_psutil_finds_the_leftover(tmp_path, monkeypatch):
    """The scan reads /proc itself on Linux; elsewhere (no /proc) it asks psutil: that path, run here."""
    monkeypatch.setattr("simctl.core.processes._PROCFS", False)
    test_a_model_that_leaves_a_daemon_is_not_completed_while_it_lives_and_says_so(tmp_path)


def test_members_ending_together_each_say_what_they_left(tmp_path):
    """Jobs that end in one burst share one scan of the process table: each is
    still given the daemon it left, and only its own."""
    exp = make_exp(tmp_path)
    daemon = write_script(tmp_path / "daemon.py", DAEMON)
    pidfile = tmp_path / "daemons.pid"
    ens = exp.create_ensemble("burst", replicas=6, run_settings=code_settings(
        exp, f"import subprocess, sys; subprocess.run([sys.executable, {str(daemon)!r}, {str(pidfile)!r}])"),
        path=str(tmp_path))
    exp.start(ens)
    pids = read_pids(pidfile)
    assert len(pids) == 6 and all(map(gone, pids))
    assert exp.get_status(ens) == [Status.COMPLETED] * 6
    reasons = [rec.reason for rec in exp.summary_data()]
    for reason in reasons:
        assert re.search(r"it left [12] process\(es\) running when it exited", reason), reason
    for pid in pids:
        assert sum(f"{pid} (python" in reason for reason in reasons) == 1, (pid, reasons)


def test_a_leftover_whose_name_holds_parentheses_and_spaces_is_found(tmp_path):
    """/proc/<pid>/stat puts the program's name in parentheses: one holding ') ' must not
    shift the fields read after it."""
    odd = tmp_path / "x) y (z"
    odd.write_bytes(open(shutil.which("sleep") or "/bin/sleep", "rb").read())
    odd.chmod(0o755)
    pidfile = tmp_path / "odd.pid"
    exp = make_exp(tmp_path)
    model = exp.create_model("m", exp.create_run_settings(
        "sh", exe_args=["-c", f'"$0" 300 & echo $! > {str(pidfile)!r}', str(odd)]), path=str(tmp_path))
    exp.start(model)
    pid = int(pidfile.read_text())
    assert gone(pid)
    rec = exp.summary_data()[0]
    assert rec.status is Status.COMPLETED
    assert f"it left 1 process(es) running when it exited, stopped then: {pid} (x) y (z)" in rec.reason, rec.reason


def test_run_settings_the_local_launcher_does_not_use_are_said_not_silently_dropped(tmp_path):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings("true")
    rs.set_tasks(4)
    rs.set_hostlist(["n1"])
    rs.set("n", 3)  # a run command's flag, set after the settings were made (refused when given to them)
    model = exp.create_model("m", rs, path=str(tmp_path))
    with pytest.warns(simctl.SimctlWarning, match=r"one process on this machine: tasks=4, hostlist=\['n1'\], "
                                                  r"run_args=\{'n': '?3'?\} in its run settings are not used"):
        exp.preview(model, show=False)
    plain = exp.create_model("p", exp.create_run_settings("true"), path=str(tmp_path))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exp.preview(plain, show=False)  # nothing to say
