"""The feature store under faults (issue 15: durability, recovery, limits and
reports), on real servers, one shard and a 3-shard Redis Cluster: a server
killed with SIGKILL mid-writes, a graceful stop of a large store, a full disk
(a small tmpfs mounted for the test), a cluster shard that is down or paused,
a killed supervisor, a server shut down by a client, the open-file limit and a
full store, the files' modes and the logs kept across starts."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from _lifecycle_helpers import gone, make_exp, wait_until
from _store_helpers import free_ports

from simctl import Status
from simctl.store import StoreConnectionError, StoreError
from simctl.store.orchestrator import make_orchestrator
from simctl.store.protocol import own_slots, tag_for


def info_of(db: Any, i: int = 0) -> dict[str, Any]:
    return json.loads((Path(db.path) / f"shard-{i}.addr").read_text())


def shard(db: Any, i: int = 0, **kwargs: Any) -> redis.Redis:
    """A connection to shard ``i`` alone (its own keys, in a cluster)."""
    host, _, port = db.get_address()[i].rpartition(":")
    kwargs.setdefault("decode_responses", True)
    return redis.Redis(host=host, port=int(port), username=db.username, password=db.password, **kwargs)


def tag_of(db: Any, i: int) -> str:
    """A hash tag whose keys shard ``i`` holds (``''`` for one server)."""
    if not db.is_cluster:
        return ""
    return "{" + tag_for(own_slots(shard(db, i).execute_command("CLUSTER", "NODES"))) + "}"


def flags(db: Any, observer: int, i: int) -> str:
    """Shard ``i``'s flags as shard ``observer`` sees them (``master``, ``master,fail``...)."""
    port = info_of(db, i)["port"] if (Path(db.path) / f"shard-{i}.addr").exists() else None
    port = port or int(db.get_address()[i].rpartition(":")[2])
    for line in shard(db, observer).execute_command("CLUSTER", "NODES").splitlines():
        parts = line.split()
        if parts[1].split("@")[0].endswith(f":{port}"):
            return parts[2]
    return ""


def events(db: Any, i: int = 0) -> list[dict[str, Any]]:
    path = Path(db.path) / f"shard-{i}.events"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def answers(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.RedisError:
        return False


def restarted(db: Any, i: int, old_pid: int) -> bool:
    """Shard ``i`` runs a new server (not ``old_pid``) that answers."""
    try:
        pid = info_of(db, i)["pid"]
    except (OSError, ValueError, KeyError):
        return False
    return pid != old_pid and answers(shard(db, i))


def cluster_ok(db: Any) -> bool:
    try:
        return all("cluster_state:ok" in shard(db, i).execute_command("CLUSTER", "INFO")
                   for i in range(db.num_shards))
    except redis.RedisError:
        return False


class Writer:
    """Writes ``k<tag><n>`` = n to one shard as fast as it answers, in a thread,
    keeping the time each write was acknowledged, and the errors."""

    def __init__(self, db: Any, i: int, prefix: str = "k") -> None:
        self.r = shard(db, i, socket_timeout=5)
        self.prefix = prefix + tag_of(db, i)
        self.acked: dict[str, float] = {}
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            key = f"{self.prefix}{n}"
            try:
                self.r.set(key, n)
                self.acked[key] = time.monotonic()
            except redis.RedisError as exc:
                self.errors.append((time.monotonic(), str(exc)))
                time.sleep(0.01)
            n += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.r.close()


@pytest.fixture
def store_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The driver's log of the store (logger ``simctl.store``)."""
    caplog.set_level(logging.INFO, logger="simctl")
    yield caplog


def logged(caplog: pytest.LogCaptureFixture, text: str, level: int = logging.INFO) -> bool:
    return any(text in r.getMessage() and r.levelno >= level for r in caplog.records)


# -- a server killed mid-writes ------------------------------------------------------------------


@pytest.mark.parametrize("server", ["redis-server", "valkey-server"])
def test_a_killed_server_loads_back_every_run_models_outputs(tmp_path, server):
    """A run's outputs, its reply and the worker's taken list are written at once (the worker's FINISH, the
    server module's command or its Lua script), which the append-only file holds as one MULTI/EXEC: a server
    killed and started again loads them back, on redis 7.0 (which replays the file as the ``default`` user,
    checking each transaction against that user's rules) as on valkey. Before the default user's rules
    allowed it, redis 7.0 dropped every such transaction at the load, and with it the outputs."""
    import numpy as np
    import torch

    from simctl.ml.torch import serialize_model

    class Neg(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return -x

    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(1), server=server, persistence="always")
    exp.start(db)
    try:
        with db.client() as c:
            c.set_model("neg", serialize_model(Neg()), "TORCH")
            for i in range(6):
                c.put_tensor(f"x{i}", np.full(3, i, np.float32))
                c.run_model("neg", f"x{i}", f"y{i}")  # the first loads the model; the others take the fast path
        pid = info_of(db)["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: restarted(db, 0, pid), "the shard's server to be back")
        with db.client() as c:
            assert [c.get_tensor(f"y{i}").tolist() for i in range(6)] == [[-float(i)] * 3 for i in range(6)]
        log = Path(db.path, "shard-0.log").read_text(errors="replace")
        assert "CRITICAL" not in log and "NOPERM" not in log
    finally:
        exp.stop(db)


@pytest.mark.parametrize("shards", [1, 3])
def test_a_killed_server_is_back_by_itself_with_every_write_but_at_most_the_last_second(tmp_path, shards, store_log):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(shards), db_nodes=shards, ml_devices=[])
    exp.start(db)
    victim = shards - 1
    writer = Writer(db, victim)
    others = [Writer(db, i, prefix="o") for i in range(shards) if i != victim]
    wait_until(lambda: len(writer.acked) > 2000, "writes to the shard")
    pid = info_of(db, victim)["pid"]
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: restarted(db, victim, pid), "the shard's server to be back")
    back_at = time.monotonic()
    count = len(writer.acked)
    wait_until(lambda: len(writer.acked) > count + 500, "writes after the restart")
    writer.stop()
    for o in others:
        o.stop()

    keys = list(writer.acked)
    values = shard(db, victim).mget(keys)
    lost = [k for k, v in zip(keys, values) if v is None]
    # everysec: a crash loses at most about the last second of acknowledged writes (here none:
    # the server had written them to the file; only fsync waits for the second)
    assert all(writer.acked[k] > killed_at - 1.0 for k in lost), lost[:5]
    assert len(lost) < len(keys)
    assert all(killed_at <= t for t, _ in writer.errors)  # refused only while it was down (if at all)
    for o in others:  # a cluster's healthy shards served their keys all along
        assert not [e for t, e in o.errors if killed_at <= t <= back_at], o.errors[:3]
        assert len(o.acked) > 0
    if db.is_cluster:
        wait_until(lambda: cluster_ok(db), "the restarted shard to rejoin the cluster")
    assert exp.get_status(db) == [Status.RUNNING] * shards
    kinds = [e["event"] for e in events(db, victim)]
    assert kinds[-3:] == ["crash", "loaded", "restarted"], kinds
    # the driver's log has each (its file watcher reads the events within a moment)
    wait_until(lambda: logged(store_log, "ended (killed by SIGKILL", logging.WARNING), "the crash in the log")
    wait_until(lambda: logged(store_log, f"shard {victim} is back"), "the restart in the log")
    assert logged(store_log, f"shard {victim} loaded")
    exp.stop(db)
    (rec,) = [r for r in exp.summary_data() if r.key == f"orchestrator/shard-{victim}"]
    assert rec.status is Status.CANCELLED and "its data is saved in its append-only file" in rec.reason


def test_a_server_that_keeps_crashing_is_given_up_failed_with_the_reason_and_a_client_shutdown_too(tmp_path,
                                                                                                   store_log):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(), ml_devices=[], max_restarts=1)
    exp.start(db)
    pid = info_of(db)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: restarted(db, 0, pid), "the first restart")
    os.kill(info_of(db)["pid"], signal.SIGKILL)  # a second crash in a row: beyond max_restarts=1
    wait_until(lambda: exp.get_status(db) == [Status.FAILED], "the store to be Failed")
    (rec,) = exp.summary_data()
    assert "ended (killed by SIGKILL" in rec.reason and "2 times in a row; not restarted again" in rec.reason
    wait_until(lambda: logged(store_log, "not restarted again", logging.ERROR), "the end in the log")

    db = make_orchestrator(exp, port=free_ports(), ml_devices=[], db_identifier="shut")
    exp.start(db)
    with contextlib.suppress(redis.ConnectionError):
        shard(db).shutdown(nosave=True)  # a member ends the store
    wait_until(lambda: exp.get_status(db) == [Status.FAILED], "the store to be Failed")
    (rec,) = [r for r in exp.summary_data() if r.key == "shut/shard-0"]
    assert "shut down by a client (SHUTDOWN) while the store should run" in rec.reason
    wait_until(lambda: logged(store_log, "shut down by a client", logging.ERROR), "the end in the log")


# -- a graceful stop of a large store -------------------------------------------------------------


def fill(r: redis.Redis, mib: int, prefix: str = "big") -> None:
    """``mib`` values of 1 MiB each (incompressible)."""
    block = os.urandom(1 << 20)
    pipe = r.pipeline(transaction=False)
    for n in range(mib):
        pipe.set(f"{prefix}{n}", block[n % 4096:] + block[:n % 4096])
        if n % 32 == 31:
            pipe.execute()
    pipe.execute()


@pytest.mark.parametrize("persistence", ["snapshot", "everysec"])
def test_a_graceful_stop_of_a_large_store_waits_for_the_save_and_it_loads_back_whole(tmp_path, persistence, store_log):
    # the launcher kills a step 0.2 s after SIGTERM: the store's save takes longer, and is waited for
    exp = make_exp(tmp_path, launcher_options={"stop_grace": 0.2})
    db = make_orchestrator(exp, port=free_ports(), ml_devices=[], persistence=persistence)
    exp.start(db)
    mib = 768
    fill(shard(db), mib)
    r = shard(db, decode_responses=False)
    used = int(r.info("memory")["used_memory"])
    assert used > mib << 20
    sample = {k: r.get(k) for k in ("big0", f"big{mib // 2}", f"big{mib - 1}")}
    begun = time.monotonic()
    exp.stop(db)
    took = time.monotonic() - begun
    (rec,) = exp.summary_data()
    assert rec.status is Status.CANCELLED and "its data is saved in" in rec.reason, rec.reason
    if persistence == "snapshot":
        assert took > 0.2  # longer than the launcher's grace: the save was not killed
        assert any(e["event"] == "saving" for e in events(db)) or took < 2.5  # progress while it lasts
    assert not list(Path(db.path).glob("temp-*"))  # no partial file left behind

    again = make_orchestrator(exp, port=free_ports(), ml_devices=[], persistence=persistence)
    exp.start(again)
    r = shard(again, decode_responses=False)
    assert r.dbsize() == mib
    assert {k: r.get(k) for k in sample} == sample
    (loaded,) = [e for e in events(again) if e["event"] == "loaded" and e["launch"] == info_of(again)["launch"]]
    assert loaded["loaded"]["keys"] == mib and loaded["loaded"]["source"] == ("rdb" if persistence == "snapshot"
                                                                             else "aof")
    assert logged(store_log, f"loaded {mib} keys from its")
    exp.stop(again)


def test_a_stop_limit_cuts_the_save_and_the_status_says_the_data_was_not_saved(tmp_path, store_log):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(), ml_devices=[], persistence="snapshot", stop_limit=0.05)
    exp.start(db)
    fill(shard(db), 512)
    exp.stop(db)
    (rec,) = exp.summary_data()
    assert rec.status is Status.FAILED
    assert "WITHOUT saving its data: the final save was cut after 0.05 s (stop_limit)" in rec.reason
    assert logged(store_log, "WITHOUT saving its data", logging.ERROR)
    assert (Path(db.path) / "shard-0.unsaved").exists()
    again = make_orchestrator(exp, port=free_ports(), ml_devices=[], persistence="snapshot")
    exp.start(again)
    assert shard(again).dbsize() == 0  # nothing was saved...
    assert logged(store_log, "did not save its data (the final save was cut", logging.WARNING)  # ...and it says so
    exp.stop(again)
    assert not (Path(db.path) / "shard-0.unsaved").exists()  # this stop saved


# -- a full disk ------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs, mounted for the test (as root) and unmounted after it."""
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill_disk(disk: Path, leave: int) -> Path:
    """A file taking the disk's space but ``leave`` bytes."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


@pytest.mark.parametrize("persistence", ["everysec", "snapshot"])
def test_a_full_disk_is_reported_at_the_write_and_at_the_stop_and_never_loads_stale_data_silently(
        tmp_path, small_disk, persistence, store_log):
    exp = make_exp(tmp_path)
    path = str(small_disk / "store")
    db = make_orchestrator(exp, port=free_ports(), path=path, persistence=persistence)  # with its inference worker
    exp.start(db)
    client = db.client()
    client.put_tensor("before", __import__("numpy").arange(10))
    exp.stop(db)
    db = make_orchestrator(exp, port=free_ports(), path=path, persistence=persistence)
    exp.start(db)
    client = db.client()
    filler = fill_disk(small_disk, leave=256 << 10)
    import numpy as np

    big = np.frombuffer(os.urandom(1 << 20), dtype=np.uint8)  # incompressible: a snapshot of it needs the space
    if persistence == "everysec":
        with pytest.raises(StoreError, match="MISCONF.*No space left on device") as err:
            for n in range(64):
                client.put_tensor(f"t{n}", big)
        assert "the store answered" in str(err.value)
        wait_until(lambda: logged(store_log, "cannot write its data to disk", logging.ERROR), "the disk error logged",
                   timeout=30)
        worker = info_of(db)["workers"]["CPU"]
        time.sleep(1.5)  # the worker meets the refused writes
        assert psutil.Process(worker).is_running()  # it waits, rather than crash-loop
    else:
        for n in range(8):
            client.put_tensor(f"t{n}", big)  # a snapshot store writes to disk only at the stop
    client.close()
    exp.stop(db)
    (rec,) = [r for r in exp.summary_data() if r.key == "orchestrator/shard-0"][-1:]
    assert rec.status is Status.FAILED and "WITHOUT saving its data" in rec.reason, rec.reason
    assert "No space left on device" in rec.reason
    assert logged(store_log, "WITHOUT saving its data", logging.ERROR)
    assert not list(Path(path).glob("temp-*"))

    filler.unlink()  # room again: the next start loads what is on disk, and says it is older
    again = make_orchestrator(exp, port=free_ports(), path=path, persistence=persistence)
    exp.start(again)
    c = again.client()
    assert c.tensor_exists("before")
    assert logged(store_log, "did not save its data", logging.WARNING)
    (loaded,) = [e for e in events(again) if e["event"] == "loaded" and e["launch"] == info_of(again)["launch"]]
    assert "unsaved" in loaded["loaded"] and loaded["level"] == "warning"
    c.close()
    exp.stop(again)


# -- a cluster with a shard down or paused --------------------------------------------------------


def test_a_cluster_serves_its_healthy_shards_while_one_is_down_and_the_shard_rejoins(tmp_path, store_log):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(3), db_nodes=3, ml_devices=[])
    exp.start(db)
    victim = 2
    shard(db, victim).set(f"kept{tag_of(db, victim)}", "yes")
    sup = psutil.Process(info_of(db, victim)["supervisor"])
    pid = info_of(db, victim)["pid"]
    sup.suspend()  # the supervisor cannot restart it: the shard stays down
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(pid), "the server to die")
    writers = [Writer(db, i) for i in (0, 1)]
    down_at = time.monotonic()
    # longer than the cluster's node timeout: the others mark it failed, and go on serving
    wait_until(lambda: "fail" in flags(db, 0, victim), "the others to mark the shard failed")
    with pytest.raises(redis.ConnectionError):
        shard(db, victim).ping()
    sup.resume()
    wait_until(lambda: restarted(db, victim, pid), "the shard to be restarted")
    wait_until(lambda: cluster_ok(db), "the shard to rejoin")
    for w in writers:
        w.stop()
        assert not [e for t, e in w.errors if t >= down_at], w.errors[:3]
        assert len(w.acked) > 100
    assert shard(db, victim).get(f"kept{tag_of(db, victim)}") == "yes"
    from redis.cluster import RedisCluster

    host, _, port = db.get_address()[0].rpartition(":")
    rc = RedisCluster(host=host, port=int(port), username=db.username, password=db.password, decode_responses=True)
    assert rc.get(f"kept{tag_of(db, victim)}") == "yes"
    rc.close()
    exp.stop(db)


def test_a_paused_cluster_shard_costs_the_others_nothing_and_serves_again_when_resumed(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(3), db_nodes=3, ml_devices=[])
    exp.start(db)
    victim = 1
    writers = [Writer(db, i) for i in range(3)]
    wait_until(lambda: all(len(w.acked) > 100 for w in writers), "writes")
    server = psutil.Process(info_of(db, victim)["pid"])
    pause = 6.0
    server.suspend()
    paused_at = time.monotonic()
    time.sleep(pause)
    server.resume()
    resumed_at = time.monotonic()
    wait_until(lambda: cluster_ok(db), "the cluster to be ok")
    count = len(writers[victim].acked)
    wait_until(lambda: len(writers[victim].acked) > count + 200, "writes to the paused shard again")
    for w in writers:
        w.stop()
    for i in (0, 2):  # the healthy shards did not notice
        assert not [e for t, e in writers[i].errors if t >= paused_at], writers[i].errors[:3]
    assert [t for t in writers[victim].acked.values() if t >= resumed_at]  # it serves again
    # (how long it takes after the pause is measured by benchmarks/bench_store_durability.py)
    exp.stop(db)


# -- a killed supervisor ----------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 3])
def test_a_killed_supervisor_leaves_nothing_running_and_the_store_starts_again(tmp_path, shards, store_log):
    exp = make_exp(tmp_path)
    port = free_ports(shards)
    db = make_orchestrator(exp, port=port, db_nodes=shards)  # with inference workers
    exp.start(db)
    info = info_of(db, 0)
    procs = [info["supervisor"], info["pid"], *info["workers"].values()]
    assert len(procs) == 3
    os.kill(info["supervisor"], signal.SIGKILL)
    for pid in procs:
        wait_until(lambda pid=pid: gone(pid), f"process {pid} to end with its supervisor")
    wait_until(lambda: exp.get_status(db)[0] is Status.FAILED, "shard 0 to be Failed")
    exp.stop(db)
    db = make_orchestrator(exp, port=port, db_nodes=shards)  # the same ports: nothing holds them
    exp.start(db)
    assert db.is_active()
    exp.stop(db)


# -- limits, files, logs ----------------------------------------------------------------------------


def test_open_files_are_raised_to_the_hard_limit_and_a_full_store_says_so(tmp_path, store_log):
    import resource

    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(), ml_devices=[])
    exp.start(db)
    r = shard(db)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    server = psutil.Process(info_of(db)["pid"])
    assert server.rlimit(psutil.RLIMIT_NOFILE)[0] == hard
    assert int(r.config_get("maxclients")["maxclients"]) == min(hard - 64, 100_000)
    r.config_set("maxclients", int(r.info("clients")["connected_clients"]) + 1)
    extra: list[Any] = []
    refused = None
    for _ in range(50):
        while True:  # take the places left (a connection of the driver's may close and free one meanwhile)
            c = shard(db)
            try:
                c.ping()
            except redis.ConnectionError as exc:
                assert "max number of clients reached" in str(exc)
                break
            extra.append(c)
        try:
            extra.append(db.client())
        except StoreConnectionError as exc:
            refused = str(exc)
            break
    assert refused is not None and "the store is full" in refused and "Is it running" not in refused
    for c in extra:
        c.close()
    r.close()
    assert logged(store_log, "runs as root", logging.WARNING) == (os.geteuid() == 0)  # a warning as root
    exp.stop(db)


def test_files_are_private_and_logs_are_appended_across_starts(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(), ml_devices=[], persistence="snapshot")
    exp.start(db)
    shard(db).set("k", "v")
    exp.stop(db)
    d = Path(db.path)
    first_err = (d / "orchestrator_0.err").read_text()
    assert "stopped; its data is saved" in first_err
    again = make_orchestrator(exp, port=free_ports(), ml_devices=[], persistence="everysec")
    exp.start(again)
    assert shard(again).get("k") == "v"  # the snapshot was loaded, then kept in an append-only file
    shard(again).set("k2", "v")
    exp.stop(again)
    # nothing is lost: the first run's output is kept beside the second's (each run keeps its own, issue 17)
    kept = [p for p in d.glob("orchestrator_0.err.*")]
    assert [p.read_text() for p in kept] == [first_err]
    assert "stopped; its data is saved" in (d / "orchestrator_0.err").read_text()
    # and within a run the server's own log is appended to across its starts, never truncated
    assert (d / "shard-0.log").read_text().count("Ready to accept connections") >= 2
    files = [p for p in d.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"shard-0.rdb", "shard-0.log", "shard-0.events", "orchestrator_0.err", "orchestrator_0.out",
            "shard-0.conf"} <= names and any(p.parent.name == "shard-0.aof" for p in files)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files if stat.S_IMODE(p.stat().st_mode) != 0o600} \
        == {}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"persistence": "sometimes"}, "persistence must be one of 'everysec', 'always', 'snapshot', 'off'"),
    ({"persist": False, "persistence": "always"}, "persist=False keeps nothing"),
    ({"stop_limit": 0}, "stop_limit"),
    ({"max_restarts": -1}, "max_restarts must be an int >= 0"),
])
def test_bad_durability_arguments_are_refused_before_anything_starts(tmp_path, kwargs, match):
    from simctl import ConfigError

    exp = make_exp(tmp_path)
    with pytest.raises(ConfigError, match=match):
        make_orchestrator(exp, port=free_ports(), **kwargs)
    assert not (tmp_path / "x").exists()


def test_a_store_step_waits_for_its_supervisor_and_keeps_its_logs(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(), ml_devices=[])
    (step,) = db.plan(exp.controller.context())
    assert step.stop_grace == float("inf") and step.append_output
    limited = make_orchestrator(exp, port=free_ports(), ml_devices=[], stop_limit=5, db_identifier="lim")
    (step,) = limited.plan(exp.controller.context())
    assert step.stop_grace == 35.0 and ["--stop-limit", "5"] == step.argv[step.argv.index("--stop-limit"):][:2]


#: a driver whose model leaves a process of its own (its own session) and then sleeps
ORPHANING_DRIVER = """
import sys, time
import simctl
exp = simctl.Experiment("exp", exp_path="exp", launcher="local")
code = ("import subprocess, sys, time\\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\\n"
        "open('left.pid', 'w').write(str(p.pid))\\n"
        "time.sleep(600)\\n")
m = exp.create_model("m", exp.create_run_settings(exe=sys.executable, exe_args=["-c", code]))
exp.start(m, block=False)
print("started", flush=True)
time.sleep(300)
"""


def test_simctl_stop_stops_what_a_job_whose_own_process_died_left_running(tmp_path):
    """A process a job left (a server whose supervisor was killed on a system
    without the parent-death signal) is found by the job's mark and stopped."""
    from _lifecycle_helpers import SIMCTL, run_driver

    proc = run_driver(tmp_path, ORPHANING_DRIVER, wait=False)
    assert proc.stdout.readline().strip() == "started"
    left_file = tmp_path / "left.pid"  # the model runs in the driver's directory
    left = wait_until(lambda: left_file.exists() and left_file.read_text() and int(left_file.read_text()),
                      "the model's own process to start")
    proc.kill()  # the driver dies...
    proc.wait()
    try:
        model = [p for p in psutil.process_iter(["cmdline"]) if "left.pid" in " ".join(p.info["cmdline"] or [])]
        for p in model:
            p.kill()  # ...and the job's own process: only what it left runs
        wait_until(lambda: all(gone(p.pid) for p in model), "the model to die")
        assert not gone(left)
        res = subprocess.run([SIMCTL, "stop", "exp", "--json"], cwd=tmp_path, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        wait_until(lambda: gone(left), "what the job left to be stopped")
        (job,) = json.loads(res.stdout)["jobs"]
        assert "process(es) it left running were stopped" in job["reason"], job
    finally:
        with contextlib.suppress(psutil.Error):
            psutil.Process(left).kill()
