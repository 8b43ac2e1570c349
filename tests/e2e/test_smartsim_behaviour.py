"""Issue 19's "behaviour that differs today and should not", in simctl itself:
what SmartSim does (a model's path set at creation, ensemble members
prefixing their keys, errors a caller catches as TypeError or
FileNotFoundError, mpirun on the local launcher, Ctrl-C after
start(block=False)), each with real processes."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from _lifecycle_helpers import (
    gone,
    kill_pids,
    make_exp,
    manifest_statuses,
    read_pids,
    run_driver,
    wait_until,
    write_script,
)

import simctl
from simctl import ConfigError
from simctl.core import manifest as mf

DUMP = "import os, sys; print(os.getcwd()); print(os.environ.get('SSKEYOUT', '<unset>'))"


def _dump(exp: simctl.Experiment) -> simctl.RunSettings:
    return exp.create_run_settings(sys.executable, exe_args=["-c", DUMP])


# -- a model's path is <exp_path>/<name> from its creation ---------------------------------------------------------


def test_paths_are_set_at_creation_and_hold_an_ungenerated_model_s_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = make_exp(tmp_path)
    model = exp.create_model("m", _dump(exp))
    ens = exp.create_ensemble("e", replicas=2, run_settings=_dump(exp))
    given = exp.create_model("g", _dump(exp), path=str(tmp_path / "elsewhere"))
    assert model.path == os.path.join(exp.exp_path, "m")  # SmartSim's <exp_path>/<name>, before generate
    assert ens.path == os.path.join(exp.exp_path, "e")
    assert [m.path for m in ens] == [os.path.join(exp.exp_path, "e", f"e_{i}") for i in range(2)]
    assert given.path == str(tmp_path / "elsewhere")
    exp.start(model, ens, given)
    assert exp.get_status(model, ens, given) == [simctl.Status.COMPLETED] * 4
    # each one's output files are in its path, made at start; none in the current directory
    ran_in = {m.name: Path(m.path, f"{m.name}.out").read_text().splitlines()[0] for m in (model, *ens, given)}
    assert not list(tmp_path.glob("*.out"))
    # never generated, a model runs in the driver's directory (the guides' `exe_args="script.py"` is found);
    # a path given, or generate(), makes its path where it runs
    assert ran_in == {"m": str(tmp_path), "e_0": str(tmp_path), "e_1": str(tmp_path), "g": given.path}
    assert exp.generate(model, ens, overwrite=True) == [model.path, *(m.path for m in ens)]
    exp.start(model, ens)
    assert all(Path(m.path, f"{m.name}.out").read_text().splitlines()[0] == m.path for m in (model, *ens))


def test_an_ungenerated_model_with_files_to_receive_is_refused(tmp_path):
    exp = make_exp(tmp_path)
    (tmp_path / "in.txt").write_text("x")
    model = exp.create_model("m", _dump(exp))
    model.attach_generator_files(to_copy=[str(tmp_path / "in.txt")])
    with pytest.raises(ConfigError, match=r"model 'm' has files to copy, symlink or configure, but its directory "
                                          r".*/m was never generated; call exp.generate"):
        exp.start(model)
    assert not os.path.exists(model.path)  # nothing was written
    exp.generate(model)
    exp.start(model)
    assert (Path(model.path) / "in.txt").read_text() == "x"


# -- members made from params or replicas prefix their keys ----------------------------------------------------------


def test_members_made_from_replicas_or_params_prefix_their_keys(tmp_path):
    exp = make_exp(tmp_path)
    reps = exp.create_ensemble("reps", replicas=2, run_settings=_dump(exp))
    sweep = exp.create_ensemble("sweep", params={"x": [1]}, run_settings=_dump(exp))
    hand = exp.create_ensemble("hand")
    hand.add_model(exp.create_model("added", _dump(exp)))  # a model added by hand keeps its own choice
    assert reps.query_key_prefixing() and sweep.query_key_prefixing() and not hand.query_key_prefixing()
    reps["reps_1"].disable_key_prefixing()  # one member can still turn it off
    exp.start(reps, sweep, hand)
    got = {m.name: Path(m.path, f"{m.name}.out").read_text().splitlines()[1] for e in (reps, sweep, hand) for m in e}
    assert got == {"reps_0": "reps_0", "reps_1": "<unset>", "sweep_0": "sweep_0", "added": "<unset>"}


# -- errors a SmartSim caller catches --------------------------------------------------------------------------------


@pytest.mark.parametrize("call,match", [
    (lambda exp: exp.create_model("m", "python"), "run_settings must be a RunSettings"),
    (lambda exp: exp.create_run_settings(5), "exe must be a non-empty string"),
    (lambda exp: exp.create_run_settings("true").set_hostlist([444]), r"hostlist\[0\] must be a str"),
    (lambda exp: exp.create_run_settings("true").set_tasks("2"), "must be a positive integer"),
    (lambda exp: exp.create_ensemble("e", params=["x", 1]), "parameter names must be non-empty strings"),
    (lambda exp: exp.create_ensemble("e").add_model("model"), "add_model takes a Model"),
    (lambda exp: exp.stop("model"), "expected a Model, an Ensemble or another entity, got str"),
    (lambda exp: exp.start(exp.create_model("m", exp.create_run_settings("true")), block="yes"),
     "block must be True or False"),
    (lambda exp: simctl.Experiment("t", ["a-list"]), "exp_path must be a path to a directory"),
])
def test_wrong_types_are_config_errors_and_type_errors(tmp_path, call, match):
    exp = make_exp(tmp_path)
    with pytest.raises(TypeError, match=match) as info:
        call(exp)
    assert isinstance(info.value, ConfigError)  # simctl's own error, message kept
    with pytest.raises(ConfigError) as value_error:  # a wrong value of the right type is no TypeError
        exp.create_run_settings("true").set_tasks(0)
    assert not isinstance(value_error.value, TypeError)


def test_a_missing_file_to_attach_is_config_error_and_file_not_found(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("m", exp.create_run_settings("true"))
    for kind in ("to_copy", "to_symlink", "to_configure"):
        with pytest.raises(FileNotFoundError, match=f"file to {kind[3:]} does not exist: 'nope.txt'") as info:
            model.attach_generator_files(**{kind: ["nope.txt"]})
        assert isinstance(info.value, ConfigError)


# -- mpirun on the local launcher --------------------------------------------------------------------------------------


def _open_mpi_bin(tmp_path: Path) -> str:
    """A directory whose ``mpirun`` is Open MPI's: this machine's /usr/bin/mpirun may be switched (by
    update-alternatives) to Slurm's mpiexec wrapper, which needs an allocation."""
    real = shutil.which("mpirun.openmpi") or shutil.which("orterun")
    assert real, "Open MPI (mpirun.openmpi or orterun) is needed: apt-get install openmpi-bin"
    bin_dir = tmp_path / "ompi-bin"
    bin_dir.mkdir()
    (bin_dir / "mpirun").symlink_to(real)
    return str(bin_dir)


def test_local_launcher_runs_two_ranks_under_mpirun(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _open_mpi_bin(tmp_path) + os.pathsep + os.environ["PATH"])
    exp = make_exp(tmp_path)
    rank = "import os; print('rank', os.environ['OMPI_COMM_WORLD_RANK'], 'of', os.environ['OMPI_COMM_WORLD_SIZE'])"
    rs = exp.create_run_settings(sys.executable, exe_args=["-c", rank], run_command="mpirun")
    rs.set_tasks(2)
    model = exp.create_model("ranks", rs)
    assert f"mpirun -n 2 {sys.executable} -c" in exp.preview(model, show=False)
    exp.start(model)
    assert exp.get_status(model) == [simctl.Status.COMPLETED], exp.logs(model, err=True)
    assert sorted(Path(model.path, "ranks.out").read_text().splitlines()) == ["rank 0 of 2", "rank 1 of 2"]


# -- Ctrl-C after start(block=False) -----------------------------------------------------------------------------------

UNBLOCKED_DRIVER = """
    import sys, time
    import simctl
    exp = simctl.Experiment("intr", exp_path="exp", launcher="local")
    rs = exp.create_run_settings(sys.executable, exe_args=[{child!r}])
    ens = exp.create_ensemble("held", replicas=2, run_settings=rs)
    exp.start(ens, block=False, kill_on_interrupt={kill})
    print("started", flush=True)
    try:
        time.sleep(120)
    except KeyboardInterrupt as exc:
        print("CAUGHT", exc, flush=True)
        print("STATUS", [s.value for s in exp.get_status(ens)], flush=True)
"""

CHILD = """
    import os, time
    with open({pids!r}, "a") as fh:
        fh.write(f"{{os.getpid()}} ")
    time.sleep(120)
"""


@pytest.mark.parametrize("kill", [True, False])
def test_ctrl_c_after_an_unblocked_start(tmp_path, kill):
    """A real SIGINT to a real driver: kill_on_interrupt=True stops the jobs
    start(block=False) left running before the KeyboardInterrupt reaches the
    driver's code; False leaves them running, also after the driver exits."""
    pids_file = tmp_path / "pids"
    child = write_script(tmp_path / "child.py", CHILD.format(pids=str(pids_file)))
    proc = run_driver(tmp_path, UNBLOCKED_DRIVER.format(child=str(child), kill=kill), wait=False)
    pids: list[int] = []
    try:
        pids = wait_until(lambda: len(read_pids(pids_file)) == 2 and read_pids(pids_file), "two children to run")
        wait_until(lambda: list(manifest_statuses(tmp_path / "exp").values()) == ["Running"] * 2,
                   "the manifest to show them RUNNING")
        assert proc.stdout is not None
        first = proc.stdout.readline()  # start() has returned: the Ctrl-C is after it, as the test means
        assert first == "started\n", first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        out = first + out
        assert proc.returncode == 0, err
        if kill:
            assert "CAUGHT interrupted (Ctrl-C): stopped 2 job(s) started with block=False" in out
            assert "STATUS ['Cancelled', 'Cancelled']" in out  # stopped before the driver's except ran
            assert all(gone(p) for p in pids)
            man = mf.load(str(tmp_path / "exp"))
            assert man is not None
            assert all("interrupted (Ctrl-C)" in r.reason for r in man.jobs), [r.reason for r in man.jobs]
        else:
            assert "CAUGHT interrupted (Ctrl-C): 2 job(s) started with block=False keep running" in out
            assert not any(gone(p) for p in pids)  # also after the driver exited
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_pids(pids or read_pids(pids_file))


BLOCKED_DRIVER = """
    import logging, os, signal, sys, threading
    import psutil
    import simctl

    def sigint():
        os.kill(os.getpid(), signal.SIGINT)

    class DuringLaunch:  # the SIGINT lands inside start()'s launch
        armed = False
        @simctl.hookimpl
        def simctl_entity_before_launch(self, entity, step, experiment):
            if DuringLaunch.armed:
                DuringLaunch.armed = False
                sigint()

    class AfterLaunch(logging.Handler):  # ... once the jobs run, before the wait has begun
        armed = False
        def emit(self, record):
            if AfterLaunch.armed and record.getMessage().startswith("started "):
                AfterLaunch.armed = False
                sigint()

    plugins = simctl.make_plugins()
    plugins.register(DuringLaunch(), name="during-launch")
    logging.getLogger("simctl.experiment").setLevel(logging.INFO)
    logging.getLogger("simctl.experiment").addHandler(AfterLaunch())
    # an unblocked start first: its Ctrl-C handler is installed, and must leave the blocking starts' Ctrl-C to them
    bg = simctl.Experiment("bg", exp_path="bg", launcher="local")
    held = bg.create_model("held", bg.create_run_settings(sys.executable, exe_args=[{child!r}, "bg-pids"]))
    bg.start(held, block=False, kill_on_interrupt=True)
    rounds = [("launch", None), ("after", None), ("wait", 1.0)] * 3
    rounds += [("timer", d) for d in (0.005, 0.01, 0.015, 0.02, 0.05)]
    for i, (phase, delay) in enumerate(rounds):
        exp = simctl.Experiment(f"r{{i}}", exp_path=f"exp{{i}}", launcher="local", plugins=plugins)
        rs = exp.create_run_settings(sys.executable, exe_args=[{child!r}, f"pids{{i}}"])
        m = exp.create_model("m", rs)
        ens = exp.create_ensemble("e", replicas=2, run_settings=rs)
        DuringLaunch.armed, AfterLaunch.armed = phase == "launch", phase == "after"
        if delay is not None:
            threading.Timer(delay, sigint).start()
        try:
            exp.start(m, ens, block=True, kill_on_interrupt=True)
            said = "NOT RAISED"
        except KeyboardInterrupt as exc:
            said = "RAISED " + str(exc)
        pids = [int(p) for p in open(f"pids{{i}}").read().split()] if os.path.exists(f"pids{{i}}") else []
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        statuses = sorted(s.value for s in exp.get_status(m, ens))
        print(f"ROUND {{i}} {{phase}} | {{said}} | {{statuses}} | alive={{alive}}", flush=True)
    print("BG", bg.get_status(held)[0].value, flush=True)
"""


def test_ctrl_c_during_a_blocking_start_stops_its_jobs_and_always_raises(tmp_path):
    """A real SIGINT to a real driver, landing inside start(block=True,
    kill_on_interrupt=True)'s launch, just after it (the jobs run, the wait has
    not begun: the KeyboardInterrupt escaped there, leaving them running), and
    during the wait, each three times, then at a few short delays (some land
    while the launcher starts the processes: every one started is recorded, so
    stopped, before the KeyboardInterrupt): every time the KeyboardInterrupt
    reaches the driver, after the jobs were stopped; an unblocked start's jobs
    in another experiment are left alone."""
    child = write_script(tmp_path / "child.py", """
        import os, sys, time
        with open(sys.argv[1], "a") as fh:
            fh.write(f"{os.getpid()} ")
        time.sleep(120)
    """)
    proc = run_driver(tmp_path, BLOCKED_DRIVER.format(child=str(child)), wait=False)
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_pids([p for f in tmp_path.glob("*pids*") for p in read_pids(f)])
    assert proc.returncode == 0, err
    rounds = [line.split(" | ") for line in out.splitlines() if line.startswith("ROUND ")]
    assert len(rounds) == 14, out + err
    for head, said, statuses, alive in rounds:
        assert said.startswith("RAISED interrupted (Ctrl-C): stopped "), (head, said, err)
        assert alive == "alive=[]", (head, said, statuses, alive, err)
        stopped_none = said.endswith("stopped 0 job(s) start() was launching") and statuses == str(["New"] * 3)
        stopped_all = "stopped 3 job(s)" in said and statuses == str(["Cancelled"] * 3)
        if head.endswith("launch"):  # before anything started: nothing to stop
            assert stopped_none, (head, said, statuses)
        elif head.endswith("timer"):  # a timer's SIGINT may come before the launch (rarely) or after
            assert stopped_none or stopped_all, (head, said, statuses)
        else:
            assert stopped_all, (head, said, statuses)
    assert "BG Running" in out, out
    assert all(gone(p) for f in tmp_path.glob("pids*") for p in read_pids(f))


# -- the getting-started tutorial: a driver's own Client, an ensemble's prefixed keys ---------------------------------

# SmartSim's doc/tutorials/getting_started/producer.py and consumer.py, with `from smartredis import Client,
# ConfigOptions` as `from simctl import Client` (the compatibility layer is E2's and tested there) and the
# consumer's poll given longer (100 x 100 ms is short on a shared machine)
PRODUCER = """
    import numpy as np
    import argparse
    import time
    import os

    from simctl import Client

    parser = argparse.ArgumentParser(description="SmartRedis ensemble producer process.")
    parser.add_argument("--redis-port")
    args = parser.parse_args()

    time.sleep(2)
    address = "127.0.0.1:" + str(args.redis_port)
    os.environ["SSDB"] = address
    c = Client(None, logger_name="SmartSim")

    data = np.random.rand(1, 1, 3, 3)
    c.put_tensor("product", data)
"""

CONSUMER = """
    import argparse
    import os
    from simctl import Client

    parser = argparse.ArgumentParser(description="SmartRedis ensemble consumer process.")
    parser.add_argument("--redis-port")
    args = parser.parse_args()

    address = "127.0.0.1:" + str(args.redis_port)
    os.environ["SSDB"] = address
    c = Client(None, logger_name="SmartSim")

    keyin = os.getenv("SSKEYIN")
    data_sources = keyin.split(",")
    data_sources.sort()

    for key in data_sources:
        c.set_data_source(key)
        input_exists = c.poll_tensor("product", 100, 600)
        db_tensor = c.get_tensor("product")
        print(f"Tensor for {key} is:", db_tensor)
"""


def test_getting_started_producer_consumer_and_the_drivers_own_client(tmp_path, monkeypatch):
    from _store_helpers import STORE_ENV

    for name in STORE_ENV:  # the driver's environment names no store: its Client finds the password itself
        monkeypatch.delenv(name, raising=False)
    write_script(tmp_path / "producer.py", PRODUCER)
    write_script(tmp_path / "consumer.py", CONSUMER)
    exp = make_exp(tmp_path, "getting-started")
    db = exp.create_database(interface="lo")
    exp.start(db)
    try:
        client = simctl.Client(address=db.get_address()[0], cluster=False)  # the tutorial's, no password
        client.put_tensor("driver", np.arange(3))
        assert client.get_tensor("driver").tolist() == [0, 1, 2]
        port = db.get_address()[0].rsplit(":", 1)[1]
        rs_prod = exp.create_run_settings(sys.executable, f"producer.py --redis-port {port}")
        ensemble = exp.create_ensemble(name="producer", replicas=2, run_settings=rs_prod)
        rs_consumer = exp.create_run_settings(sys.executable, f"consumer.py --redis-port {port}")
        consumer = exp.create_model("consumer", run_settings=rs_consumer)
        consumer.register_incoming_entity(ensemble.models[0])
        consumer.register_incoming_entity(ensemble.models[1])
        ensemble.attach_generator_files(to_copy=[str(tmp_path / "producer.py")])
        consumer.attach_generator_files(to_copy=[str(tmp_path / "consumer.py")])
        exp.generate(ensemble, overwrite=True)
        exp.generate(consumer, overwrite=True)
        exp.start(ensemble, consumer, summary=True)
        assert exp.get_status(ensemble, consumer) == [simctl.Status.COMPLETED] * 3, exp.logs(consumer, err=True)
        out = Path(consumer.path, "consumer.out").read_text()
        assert "Tensor for producer_0 is:" in out and "Tensor for producer_1 is:" in out
        assert client.tensor_exists("producer_0.product") and client.tensor_exists("producer_1.product")
        # a password given (a wrong one) is used as given, not replaced
        with pytest.raises(simctl.StoreError):
            simctl.Client(address=db.get_address()[0], cluster=False, password="wrong").get_tensor("driver")
    finally:
        exp.stop(db)


def test_plain_run_settings_still_run_on_the_local_launcher_also_under_mpirun(tmp_path, monkeypatch):
    """RunSettings made without a launcher (SmartSim's RunSettings(exe, run_command=...)) run here as
    before, and under mpirun they are sized as the local launcher's own settings are."""
    monkeypatch.setenv("PATH", _open_mpi_bin(tmp_path) + os.pathsep + os.environ["PATH"])
    exp = make_exp(tmp_path)
    plain = exp.create_model("plain", simctl.RunSettings("sh", ["-c", "echo plain"]))
    mpi = simctl.RunSettings("sh", ["-c", "echo rank $OMPI_COMM_WORLD_RANK"], run_command="mpirun")
    mpi.set_tasks(2)
    ranks = exp.create_model("ranks", mpi)
    assert "mpirun -n 2 sh -c" in exp.preview(ranks, show=False)
    exp.start(plain, ranks)
    assert exp.get_status(plain, ranks) == [simctl.Status.COMPLETED] * 2, exp.logs(ranks, err=True)
    assert Path(plain.path, "plain.out").read_text() == "plain\n"
    assert sorted(Path(ranks.path, "ranks.out").read_text().splitlines()) == ["rank 0", "rank 1"]
    with pytest.raises(ConfigError, match="does not support run command 'srun'"):
        exp.preview(exp.create_model("s", simctl.RunSettings("true", run_command="srun")), show=False)
