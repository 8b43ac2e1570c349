"""The manifest at scale: a snapshot plus an append-only journal.

A save appends only the records that changed (the snapshot stays as it is);
loading applies the journal to the snapshot; the journal is folded into a new
snapshot before it grows past it; a torn last line (a crash mid-write) is
ignored; two writers on one exp_path keep each other's records, and never
write back a stale copy of the other's; ``simctl status`` / ``simctl stop``
after a driver died read and append to it. Behaviour only, no timing."""

from __future__ import annotations

import gc
import itertools
import json
import random
import subprocess
import threading
from pathlib import Path

import pytest
from _lifecycle_helpers import SIMCTL, gone, run_driver, wait_until

import simctl
from simctl import JobStatus, Status
from simctl.core import manifest as mf
from simctl.core.serialize import converter

# -- helpers ----------------------------------------------------------------------------------------------------


def record(i: int, run: int = 1) -> mf.JobRecord:
    return mf.JobRecord(name=f"m_{i}", entity_type="Model", job_id=str(i), run=run, launcher="gate",
                        status=Status.QUEUED, ensemble="e", path=f"/nowhere/e/m_{i}",
                        launched_at=1000.0 + i + run / 10, key=f"e/m_{i}", handle={"pid": 4_000_000 + i})


def header(exp_path: str) -> dict:
    return mf.Manifest("big", exp_path, "gate").header()


def save(writer: mf.Writer, exp_path: str, records: list[mf.JobRecord]) -> list[dict]:
    return writer.save(header(exp_path), mf.encode(records))


def state(records) -> list[tuple]:
    """What must survive a round trip, in order."""
    return [(r.key, r.run, r.status, r.returncode, r.reason, r.handle) for r in records]


def snapshot(exp_path: str) -> Path:
    return Path(mf.path_of(exp_path))


def journal(exp_path: str) -> Path:
    return Path(mf.journal_of(exp_path))


def journal_size(exp_path: str) -> int:
    return journal(exp_path).stat().st_size if journal(exp_path).exists() else 0


def big_manifest(exp_path: str, n: int = 400) -> tuple[mf.Writer, list[mf.JobRecord]]:
    """A manifest well past mf.SMALL, so saves go to the journal."""
    writer = mf.Writer(exp_path)
    records = [record(i) for i in range(n)]
    save(writer, exp_path, records)
    assert snapshot(exp_path).stat().st_size > mf.SMALL
    return writer, records


class GateLauncher(simctl.Launcher):
    """Jobs that run until the test opens the gate, then complete (in-process, nothing spawned)."""

    name = "gate"
    poll_bounds = (0.01, 0.05)

    def __init__(self, **options):
        super().__init__(**options)
        self.ids = itertools.count()
        self.gate = threading.Event()

    def start(self, launches):
        for step in launches:
            step.job_id = f"g{next(self.ids)}"

    def status(self, job_ids):
        st = JobStatus(Status.COMPLETED, 0) if self.gate.is_set() else JobStatus(Status.RUNNING)
        return {i: st for i in job_ids}

    def stop(self, job_ids):
        return {i: JobStatus(Status.CANCELLED) for i in job_ids}


class GatePlugin:
    @simctl.hookimpl
    def simctl_register_launchers(self):
        return [GateLauncher]


def gate_exp(exp_path: Path) -> simctl.Experiment:
    plugs = simctl.make_plugins()
    plugs.register(GatePlugin(), name="gate-plugin")
    return simctl.Experiment("big", exp_path=str(exp_path), launcher="gate", plugins=plugs)


def on_disk(exp_path: Path) -> dict[str, Status]:
    man = mf.load(str(exp_path))
    assert man is not None
    return {r.key: r.status for r in man.jobs}


# -- the journal ------------------------------------------------------------------------------------------------


def test_load_after_many_saves_equals_the_state(tmp_path):
    exp_path = str(tmp_path)
    writer, records = big_manifest(exp_path)
    inode = snapshot(exp_path).stat().st_ino
    rng = random.Random(7)
    statuses = [Status.RUNNING, Status.COMPLETED, Status.FAILED, Status.CANCELLED]
    compacted = 0
    for n in range(300):
        changed = rng.sample(records, 5)
        for r in changed:
            r.status = rng.choice(statuses)
            r.returncode = rng.randint(0, 3)
            r.reason = f"change {n}\nwith a newline and \u00e9"  # a line break inside a value stays one line
        if n % 50 == 0:  # a new launch of a job already there: a new record, after the others
            records.append(record(n % 7, run=2 + n // 50))
            changed.append(records[-1])
        save(writer, exp_path, changed)
        now = snapshot(exp_path).stat().st_ino
        if now != inode:
            compacted += 1
            inode = now
        # the journal never outgrows the snapshot: a save costs at most twice what it appends
        assert journal_size(exp_path) <= snapshot(exp_path).stat().st_size
        if n % 30 == 0 or n == 299:
            assert state(mf.load(exp_path).jobs) == state(records)
    assert state(mf.load(exp_path).jobs) == state(records)
    # most saves appended (the snapshot stayed the same file); a few compacted
    assert 1 <= compacted < 30


def test_a_load_runs_no_collector_pass_and_leaves_the_collector_as_it_was(tmp_path):
    # a manifest is many small objects, all kept: the cyclic collector walked them again and again while they
    # were made (about a third of a 100,000-record load); it is paused, then back in the state it was in
    exp_path = str(tmp_path)
    big_manifest(exp_path, n=3000)
    passes: list[str] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            passes.append(phase)

    gc.collect()
    gc.callbacks.append(count)
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            passes.clear()
            loaded = mf.load(exp_path)
            during = len(passes)
            assert gc.isenabled() is enabled
            assert loaded is not None and len(loaded.jobs) == 3000
            # none while the records are made: at most the one pass as the collector comes back on
            assert during <= (1 if enabled else 0), during
    finally:
        gc.callbacks.remove(count)
        gc.enable()
    # the state after is the same: a load that was torn mid-way by an error restores it too
    snapshot(exp_path).write_text("not json")
    with pytest.raises(simctl.ConfigError, match="is not a simctl manifest"):
        mf.load(exp_path)
    assert gc.isenabled()


def test_a_small_save_appends_one_line_and_leaves_the_snapshot_alone(tmp_path):
    exp_path = str(tmp_path)
    writer, records = big_manifest(exp_path)
    before = snapshot(exp_path).read_bytes()
    records[3].status = Status.RUNNING
    save(writer, exp_path, [records[3]])
    assert snapshot(exp_path).read_bytes() == before
    (line,) = journal(exp_path).read_text().splitlines()
    entry = json.loads(line)
    assert [j["key"] for j in entry["jobs"]] == ["e/m_3"] and entry["jobs"][0]["status"] == "Running"
    assert on_disk(tmp_path)["e/m_3"] is Status.RUNNING


def test_a_small_manifest_is_one_file(tmp_path):
    exp_path = str(tmp_path)
    writer = mf.Writer(exp_path)
    records = [record(i) for i in range(3)]
    save(writer, exp_path, records)
    records[1].status = Status.COMPLETED
    save(writer, exp_path, [records[1]])
    assert not journal(exp_path).exists()
    data = json.loads(snapshot(exp_path).read_text())
    assert data["version"] == mf.VERSION
    assert [j["status"] for j in data["jobs"]] == ["Queued", "Completed", "Queued"]


def test_a_torn_last_line_is_ignored_and_cut_off_by_the_next_writer(tmp_path):
    exp_path = str(tmp_path)
    writer, records = big_manifest(exp_path)
    records[0].status = Status.RUNNING
    save(writer, exp_path, [records[0]])
    good = state(records)
    # a writer that died half-way through its line: no newline at the end
    records[1].status = Status.FAILED
    line = json.dumps({**header(exp_path), "jobs": [converter.unstructure(records[1])]})
    with open(journal(exp_path), "a") as fh:
        fh.write(line[: len(line) // 2])
    assert state(mf.load(exp_path).jobs) == good
    # the same with a complete line of garbage last (zeros after a power cut)
    with open(journal(exp_path), "a") as fh:
        fh.write("\0" * 40 + "\n")
    assert state(mf.load(exp_path).jobs) == good

    # another writer goes on: its line starts on a line of its own and is read
    records[1].status = Status.CANCELLED
    other = mf.Writer(exp_path, mf.read(exp_path)[1])
    save(other, exp_path, [records[1]])
    assert state(mf.load(exp_path).jobs) == state(records)
    assert all(json.loads(x) for x in journal(exp_path).read_text().splitlines())


def test_a_bad_line_before_the_last_is_a_clear_error(tmp_path):
    exp_path = str(tmp_path)
    _, records = big_manifest(exp_path)
    with open(journal(exp_path), "a") as fh:
        fh.write("{not json\n")
    records[0].status = Status.RUNNING
    line = json.dumps({**header(exp_path), "jobs": [converter.unstructure(records[0])]})
    with open(journal(exp_path), "a") as fh:
        fh.write(line + "\n")
    with pytest.raises(simctl.ConfigError, match="manifest.log is not a simctl manifest journal"):
        mf.load(exp_path)


def test_compaction_folds_the_journal_into_the_snapshot(tmp_path):
    exp_path = str(tmp_path)
    writer, records = big_manifest(exp_path, n=300)
    inode = snapshot(exp_path).stat().st_ino
    n = 0
    while snapshot(exp_path).stat().st_ino == inode:
        records[n % 300].reason = f"pass {n}"
        save(writer, exp_path, [records[n % 300]])
        n += 1
    assert n > 10  # it appended for a while first
    assert not journal(exp_path).exists()
    data = json.loads(snapshot(exp_path).read_text())  # the snapshot alone holds everything
    assert [j["reason"] for j in data["jobs"]] == [r.reason for r in records]
    assert state(mf.load(exp_path).jobs) == state(records)


def test_a_manifest_of_version_2_is_read_and_continued(tmp_path):
    exp_path = str(tmp_path)
    records = [record(i) for i in range(300)]
    snapshot(exp_path).parent.mkdir(parents=True)
    old = converter.unstructure(mf.Manifest("big", exp_path, "gate", version=2, jobs=records))
    snapshot(exp_path).write_text(json.dumps(old, indent=1))  # as simctl wrote it before the journal
    man, pos = mf.read(exp_path)
    assert state(man.jobs) == state(records)
    writer = mf.Writer(exp_path, pos)
    inode = snapshot(exp_path).stat().st_ino
    n = 0
    while snapshot(exp_path).stat().st_ino == inode:  # appends, then compacts
        records[n % 300].reason = f"pass {n}"
        save(writer, exp_path, [records[n % 300]])
        assert state(mf.load(exp_path).jobs) == state(records)
        n += 1
    assert n > 10  # it appended for a while first
    assert json.loads(snapshot(exp_path).read_text())["version"] == mf.VERSION


def test_two_writers_keep_each_others_records(tmp_path):
    exp_path = str(tmp_path)
    a, mine = big_manifest(exp_path, n=250)
    b = mf.Writer(exp_path, mf.read(exp_path)[1])
    theirs = [record(1000 + i) for i in range(250)]
    assert save(b, exp_path, theirs) == []  # a wrote nothing since b read
    got = save(a, exp_path, [])  # a learns b's records
    assert sorted(r["key"] for r in got) == sorted(r.key for r in theirs)
    for n in range(100):  # interleaved saves, appends and compactions
        mine[n].status = Status.COMPLETED
        theirs[n].status = Status.FAILED
        seen_by_a = {r["key"]: r["status"] for r in save(a, exp_path, [mine[n]])}
        seen_by_b = {r["key"]: r["status"] for r in save(b, exp_path, [theirs[n]])}
        # each gets the other's records (all of them after the other compacted), never its own back
        assert set(seen_by_a) <= {r.key for r in theirs} and set(seen_by_b) <= {r.key for r in mine}
        assert seen_by_b[mine[n].key] == "Completed"
        if n:
            assert seen_by_a[theirs[n - 1].key] == "Failed"
    assert state(mf.load(exp_path).jobs) == state(mine + theirs)


def test_a_reader_never_sees_a_half_state_while_a_writer_appends_and_compacts(tmp_path):
    exp_path = str(tmp_path)
    writer, records = big_manifest(exp_path, n=250)
    done = threading.Event()
    problems: list[str] = []
    loads = 0

    def reader():
        nonlocal loads
        while not done.is_set():
            man = mf.load(exp_path)
            loads += 1
            # save k sets reason "k" on record k % 250: a consistent load is the state after some save k
            seen = [int(r.reason) for r in man.jobs if r.reason]
            k = max(seen, default=-1)
            want = {i % 250: str(i) for i in range(k + 1)}
            got = {i: r.reason for i, r in enumerate(man.jobs) if r.reason}
            if len(man.jobs) != 250 or got != want:
                problems.append(f"after save {k}: {sorted(set(got.items()) ^ set(want.items()))[:4]}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for k in range(600):
            records[k % 250].reason = str(k)
            save(writer, exp_path, [records[k % 250]])
    finally:
        done.set()
        thread.join()
    assert loads > 0 and problems == []
    assert state(mf.load(exp_path).jobs) == state(records)


# -- through the controller -----------------------------------------------------------------------------------


def test_a_second_experiment_never_writes_back_a_stale_copy_of_the_first_ones_records(tmp_path):
    first = gate_exp(tmp_path / "exp")
    one = first.create_ensemble("one", run_settings=first.create_run_settings("true"), replicas=200)
    first.start(one, block=False)
    wait_until(lambda: set(on_disk(tmp_path / "exp").values()) == {Status.RUNNING}, "one RUNNING on disk")

    second = gate_exp(tmp_path / "exp")  # reads the first one's records while they run
    two = second.create_ensemble("two", run_settings=second.create_run_settings("true"), replicas=200)
    second.start(two, block=False)
    first.launcher.gate.set()
    first.poll(interval=0.1, verbose=False)
    assert {s for k, s in on_disk(tmp_path / "exp").items() if k.startswith("one/")} == {Status.COMPLETED}

    second.launcher.gate.set()
    second.poll(interval=0.1, verbose=False)
    disk = on_disk(tmp_path / "exp")
    assert len(disk) == 400
    assert set(disk.values()) == {Status.COMPLETED}  # the first's records were not set back to RUNNING
    # and the second saw the first's records change too
    assert {r.status for r in second.summary_data()} == {Status.COMPLETED}
    assert len(second.summary_data()) == 400
    first.close()
    second.close()


def test_a_removed_manifest_is_written_whole_again(tmp_path):
    exp = gate_exp(tmp_path / "exp")
    ens = exp.create_ensemble("ens", run_settings=exp.create_run_settings("true"), replicas=300)
    exp.start(ens, block=False)
    wait_until(lambda: set(on_disk(tmp_path / "exp").values()) == {Status.RUNNING}, "RUNNING on disk")
    for p in (snapshot(str(tmp_path / "exp")), journal(str(tmp_path / "exp"))):
        p.unlink(missing_ok=True)
    exp.launcher.gate.set()
    exp.poll(interval=0.1, verbose=False)
    disk = on_disk(tmp_path / "exp")
    assert len(disk) == 300 and set(disk.values()) == {Status.COMPLETED}
    exp.close()


def test_runs_are_numbered_on_from_the_history(tmp_path):
    for _ in range(1, 4):
        exp = gate_exp(tmp_path / "exp")
        exp.launcher.gate.set()
        ens = exp.create_ensemble("ens", run_settings=exp.create_run_settings("true"), replicas=200)
        exp.start(ens)
        exp.close()
    man = mf.load(str(tmp_path / "exp"))
    assert len(man.jobs) == 600
    assert {r.run for r in man.jobs if r.key == "ens/ens_7"} == {1, 2, 3}
    assert [r.run for r in man.latest().values()] == [3] * 200


# -- after the driver died ------------------------------------------------------------------------------------

DRIVER = """
import os, time
from simctl import Experiment, Status
exp = Experiment("d", exp_path="exp", launcher="local")
ens = exp.create_ensemble("many", run_settings=exp.create_run_settings("true"), replicas=250)
exp.start(ens, block=True)
sleeper = exp.create_model("sleeper", exp.create_run_settings(exe="sleep", exe_args="120"), path=os.getcwd())
exp.start(sleeper, block=False)
while exp.get_status(sleeper) != [Status.RUNNING]:
    time.sleep(0.02)
print("ready", flush=True)
time.sleep(300)
"""


def saved_by_the_driver(exp_path: Path) -> bool:
    """The manifest on disk records what the driver knows: the 250 members completed, the sleeper running."""
    try:
        statuses = on_disk(exp_path)
    except (AssertionError, simctl.ConfigError):  # not written yet
        return False
    return statuses.get("sleeper") is Status.RUNNING and \
        [statuses.get(f"many/many_{i}") for i in range(250)] == [Status.COMPLETED] * 250


@pytest.mark.slow
def test_status_and_stop_after_the_driver_died_read_and_append_to_the_journal(tmp_path):
    proc = run_driver(tmp_path, DRIVER, wait=False)
    try:
        assert proc.stdout.readline().strip() == "ready"
        # the driver saves at most 0.25 s after a change: kill it once the manifest on disk has it all
        wait_until(lambda: saved_by_the_driver(tmp_path / "exp"), "the driver to save the sleeper as running")
    finally:
        proc.kill()
        proc.communicate()
    exp_path = str(tmp_path / "exp")
    man = mf.load(exp_path)
    (sleeper,) = [r for r in man.jobs if r.name == "sleeper"]
    assert sleeper.status is Status.RUNNING
    mf.write(man)  # as a compaction leaves it: everything in the snapshot, no journal
    assert snapshot(exp_path).stat().st_size > mf.SMALL and not journal(exp_path).exists()
    inode = snapshot(exp_path).stat().st_ino

    res = subprocess.run([SIMCTL, "status", exp_path, "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    jobs = {j["name"]: j for j in json.loads(res.stdout)["jobs"]}
    assert jobs["sleeper"]["status"] == "Running" and len(jobs) == 251
    assert {jobs[f"many_{i}"]["status"] for i in range(250)} == {"Completed"}

    res = subprocess.run([SIMCTL, "stop", exp_path, "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    wait_until(lambda: gone(sleeper.handle["pid"]), "the sleeper to be stopped")
    assert on_disk(tmp_path / "exp")["sleeper"] is Status.CANCELLED
    # what simctl stop corrected was appended: the snapshot is the same file, still saying Running
    assert snapshot(exp_path).stat().st_ino == inode
    raw = {j["name"]: j["status"] for j in json.loads(snapshot(exp_path).read_text())["jobs"]}
    assert raw["sleeper"] == "Running"
    assert "Cancelled" in journal(exp_path).read_text()
