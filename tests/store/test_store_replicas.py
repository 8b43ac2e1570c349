"""Replicas (issue 15): ``create_database(db_nodes=3, replicas=1)`` on the
local launcher runs a real cluster of 3 primaries, each with a replica that
logs in as the ``simctl-replica`` user; when a primary's server and its
supervisor are killed with SIGKILL (so nothing restarts it), its replica
takes over by itself and every key written before is read back, through the
client the driver had and through a new one. Where replicas go on hosts, and
the refusals, are checked without starting anything."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from _lifecycle_helpers import gone, make_exp, wait_until
from _store_helpers import free_ports

from simctl import ConfigError, Status
from simctl.store import cluster, roles
from simctl.store.orchestrator import make_orchestrator
from simctl.store.protocol import own_slots, tag_for


def info_of(db: Any, i: int) -> dict[str, Any]:
    return json.loads((Path(db.path) / f"shard-{i}.addr").read_text())


def node(db: Any, i: int) -> redis.Redis:
    """A connection to server ``i`` alone, as the admin."""
    info = info_of(db, i)
    return redis.Redis(host=info["host"], port=info["port"], username=db.username, password=db.password,
                       decode_responses=True, socket_timeout=10)


def nodes_seen_by(db: Any, i: int) -> dict[int, tuple[str, str, str]]:
    """port -> (node id, flags, primary's id) of every node, as server ``i`` sees them (a node still in
    the handshake of a CLUSTER MEET, under a made-up id, is not one of them)."""
    out = {}
    for line in node(db, i).execute_command("CLUSTER", "NODES").splitlines():
        parts = line.split()
        if "handshake" in parts[2].split(","):
            continue
        out[int(parts[1].split("@")[0].rpartition(":")[2])] = (parts[0], parts[2], parts[3])
    return out


def test_replicas_are_refused_on_a_single_server_and_checked(tmp_path):
    exp = make_exp(tmp_path)
    with pytest.raises(ConfigError, match=r"replicas=1 needs a Redis Cluster \(db_nodes >= 3\).*db_nodes=1"):
        make_orchestrator(exp, port=free_ports(), replicas=1)
    for bad in (-1, True, "1", 1.0):
        with pytest.raises(ConfigError, match=r"replicas must be an int >= 0 .*got"):
            make_orchestrator(exp, port=free_ports(3), db_nodes=3, replicas=bad)
    db = make_orchestrator(exp, port=free_ports(6), db_nodes=3, replicas=1)
    assert (db.num_shards, db.servers, db.replicas) == (3, 6, 1)
    assert db.job_keys() == [f"orchestrator/shard-{i}" for i in range(6)]


def test_each_replica_goes_on_another_host_than_its_primary_when_there_are_hosts_enough():
    hosts = ["n1", "n2", "n3"]
    placed = [cluster.host_of(i, 3, hosts) for i in range(9)]  # 3 primaries, 2 replicas each
    assert placed[:3] == hosts  # the primaries as without replicas: server i on hosts[i % len]
    for i in range(3, 9):
        p = cluster.primary_of(i, 3)
        assert p == i % 3 and placed[i] != placed[p]
    assert {placed[i] for i in (0, 3, 6)} == set(hosts)  # a primary and its two replicas on three hosts
    assert [cluster.host_of(i, 3, ["only"]) for i in range(6)] == ["only"] * 6  # one host: all there
    assert cluster.primary_of(2, 3) is None


def test_a_replica_takes_over_a_killed_primary_and_every_key_is_read_back(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(6), db_nodes=3, replicas=1, ml_devices=[])
    exp.start(db)
    try:
        ports = [info_of(db, i)["port"] for i in range(6)]
        assert len(db.get_address()) == 6
        seen = nodes_seen_by(db, 0)
        ids = {port: seen[port][0] for port in ports}
        for i in range(3):  # server i is a primary; server i + 3 replicates it
            assert "master" in seen[ports[i]][1]
            assert "slave" in seen[ports[i + 3]][1] and seen[ports[i + 3]][2] == ids[ports[i]]
            links = [c for c in node(db, i).client_list() if "S" in c["flags"]]
            assert [c["user"] for c in links] == [roles.REPLICA]  # the replica logged in as its own user
        client = db.client()
        keys = {f"k{n}": np.full(4, n, dtype=np.int64) for n in range(300)}
        for key, value in keys.items():
            client.put_tensor(key, value)
        for i in range(3):  # every write acknowledged by its primary has reached the replica
            r = node(db, i)
            offset = int(r.info("replication")["master_repl_offset"])
            wait_until(lambda i=i, offset=offset: int(node(db, i + 3).info("replication").get(
                "slave_repl_offset", -1)) >= offset, f"replica of server {i} to catch up")

        victim = 1
        info = info_of(db, victim)
        os.kill(info["supervisor"], signal.SIGKILL)  # nothing restarts its server...
        os.kill(info["pid"], signal.SIGKILL)  # ...which is killed too
        wait_until(lambda: gone(info["pid"]) and gone(info["supervisor"]), "the primary and its supervisor to end")
        replica = victim + 3
        wait_until(lambda: "master" in nodes_seen_by(db, 0)[ports[replica]][1]
                   and node(db, 0).execute_command("CLUSTER", "INFO").count("cluster_state:ok"),
                   "the replica to take over, by itself")
        assert "fail" in nodes_seen_by(db, 2)[ports[victim]][1]
        taken = node(db, replica).execute_command("CLUSTER", "NODES")
        assert cluster.myself(node(db, replica))[1:3] == (False, "")
        assert cluster.myself(node(db, replica))[3], taken  # it holds the slots of the lost primary

        def all_back(c: Any) -> bool:
            try:
                return all(np.array_equal(c.get_tensor(k), v) for k, v in keys.items())
            except Exception:  # the client's view of the slots is refreshed after the failed node's error
                return False

        wait_until(lambda: all_back(client), "every key through the driver's client")
        with db.client() as fresh:  # a new client finds the cluster through the addresses that answer
            assert all(np.array_equal(fresh.get_tensor(k), v) for k, v in keys.items())
            fresh.put_tensor("after", np.arange(3))  # and writes to every slot
            assert fresh.tensor_exists("after")
        client.close()
        assert exp.get_status(db)[victim] is Status.FAILED
    finally:
        exp.stop(db)
    assert all(s is not Status.RUNNING for s in exp.get_status(db))


SCRIPT = "def twice(x):\n    return x * 2\n"


def test_after_a_failover_models_run_on_the_new_primary_and_a_new_start_brings_the_lost_server_back(tmp_path):
    exp = make_exp(tmp_path)
    port = free_ports(6)
    db = make_orchestrator(exp, port=port, db_nodes=3, replicas=1)  # an inference worker beside every server
    exp.start(db)
    victim, replica = 1, 4
    tag = "{" + tag_for(own_slots(node(db, victim).execute_command("CLUSTER", "NODES"))) + "}"
    x = np.arange(6, dtype=np.float32)
    try:
        with db.client() as c:
            c.set_script("s", SCRIPT)
            c.put_tensor(f"x{tag}", x)
            c.run_script("s", "twice", [f"x{tag}"], [f"y{tag}"])
            np.testing.assert_array_equal(c.get_tensor(f"y{tag}"), x * 2)
        info = info_of(db, victim)
        os.kill(info["supervisor"], signal.SIGKILL)
        os.kill(info["pid"], signal.SIGKILL)
        port_of = info_of(db, replica)["port"]
        wait_until(lambda: cluster.myself(node(db, replica))[3], "the replica to take over the lost primary's slots")
        wait_until(lambda: all("master" in nodes_seen_by(db, i)[port_of][1] for i in (0, 2, 3, 5)),
                   "every other server to know the new primary")
        with db.client() as c:  # the worker beside the replica serves the shard now
            np.testing.assert_array_equal(c.get_tensor(f"x{tag}"), x)
            c.run_script("s", "twice", [f"y{tag}"], [f"z{tag}"])
            np.testing.assert_array_equal(c.get_tensor(f"z{tag}"), x * 4)
    finally:
        exp.stop(db)

    again = make_orchestrator(exp, port=port, db_nodes=3, replicas=1)  # the same directory: every server's data
    exp.start(again)
    try:
        ports = [info_of(again, i)["port"] for i in range(6)]
        seen = nodes_seen_by(again, 0)
        assert "slave" in seen[ports[victim]][1] and seen[ports[victim]][2] == seen[ports[replica]][0]
        with again.client() as c:
            np.testing.assert_array_equal(c.get_tensor(f"z{tag}"), x * 4)
            c.run_script("s", "twice", [f"x{tag}"], [f"w{tag}"])
            np.testing.assert_array_equal(c.get_tensor(f"w{tag}"), x * 2)
    finally:
        exp.stop(again)


def test_replicas_of_a_tls_store_copy_their_primaries_over_tls(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(6), db_nodes=3, replicas=1, ml_devices=[], tls=True)
    exp.start(db)  # ready once every replica's link to its primary is up
    try:
        with db.client() as c:
            c.put_tensor("x", np.arange(3))
            np.testing.assert_array_equal(c.get_tensor("x"), np.arange(3))
            for r in c._server.primaries().values():
                assert r.config_get("tls-replication")["tls-replication"] == "yes"
                assert int(r.info("replication")["connected_slaves"]) == 1
    finally:
        exp.stop(db)
