"""A store given no port picks free ones (issue 17): ``create_database()``
(its cluster bus ports too) and ``colocate_db_tcp()``; an explicit port is
honoured."""

from __future__ import annotations

import redis
from _lifecycle_helpers import make_exp
from _store_helpers import free_ports, port_free

from simctl import Status
from simctl.store import colocated
from simctl.store.ports import BUS_OFFSET


def _ports(db) -> list[int]:
    """The ports the shards will listen on (consecutive from ``db.port``)."""
    return list(range(db.port, db.port + db.db_nodes))


def test_create_database_without_a_port_takes_free_ones_and_runs_there(tmp_path):
    exp = make_exp(tmp_path)
    db, other = exp.create_database(), exp.create_database(db_identifier="other")
    (port,), (second,) = _ports(db), _ports(other)
    assert port != 6379 and second != port and port_free(port) and port_free(second)
    exp.start(db)
    try:
        assert exp.get_status(db) == [Status.RUNNING]
        host, _, listening = db.get_address()[0].rpartition(":")
        assert int(listening) == port
        assert redis.Redis(host=host, port=port, username=db.username, password=db.password).ping()
    finally:
        exp.stop(db)


def test_a_cluster_without_a_port_gets_consecutive_free_ports_and_free_bus_ports(tmp_path):
    exp = make_exp(tmp_path)
    ports = _ports(exp.create_database(db_nodes=3))
    assert ports == list(range(ports[0], ports[0] + 3))
    assert all(port_free(p) and port_free(p + BUS_OFFSET) for p in ports)


def test_an_explicit_port_is_honoured(tmp_path):
    exp = make_exp(tmp_path)
    port = free_ports()
    assert _ports(exp.create_database(port=port)) == [port]
    model = exp.create_model("m", exp.create_run_settings("true"), path=str(tmp_path))
    model.colocate_db_tcp(port=port + 1)
    assert model.store_use.colocated.port == port + 1


def test_colocated_stores_without_a_port_take_different_free_ports():
    a, b = colocated.tcp(), colocated.tcp()
    assert a.port != b.port and a.port != 6780 and port_free(a.port) and port_free(b.port)
