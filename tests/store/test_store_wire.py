"""The wire (simctl.store.wire), checked against the installed redis-py: the
installed version is in the range pyproject pins, every redis-py internal the
module uses is there, and the speed-ups it builds on them are in effect
against a real redis-server (a large value sent in parts and received into a
buffer of its own; one-write exchanges)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import redis
from _lifecycle_helpers import wait_until
from _paths import REPO
from _store_helpers import Server, make_client

from simctl.store import Client, wire
from simctl.store.address import parse_address
from simctl.store.direct import Direct

PYPROJECT = REPO / "pyproject.toml"


def redis_pin() -> tuple[tuple[int, ...], int]:
    """(lowest version, first major excluded) of redis-py in pyproject's dependencies."""
    (spec,) = re.findall(r'^\s*"(redis\b[^"]*)"', PYPROJECT.read_text(), re.M)  # in [project] dependencies
    low = re.search(r">=\s*([\d.]+)", spec)
    high = re.search(r"<\s*(\d+)(?:\.0)*\s*(?:,|$)", spec)
    assert low and high, f"pyproject pins redis-py to a range with an upper bound: {spec!r}"
    return tuple(int(p) for p in low.group(1).split(".")), int(high.group(1))


def test_the_installed_redis_py_is_in_the_pinned_range_and_the_majors_checked():
    low, excluded = redis_pin()
    installed = tuple(int(p) for p in re.findall(r"\d+", redis.__version__)[:3])
    assert low <= installed and installed[0] < excluded, (redis.__version__, low, excluded)
    # the pin's majors are the ones the wire says it was checked against
    assert set(wire.REDIS_MAJORS) == set(range(low[0], excluded)), (wire.REDIS_MAJORS, low, excluded)


def test_every_redis_py_internal_the_wire_uses_is_there():
    missing = [name for name, ok in wire.internals().items() if not ok]
    assert not missing, f"redis-py {redis.__version__} lacks what simctl.store.wire uses: {missing}"


def test_the_client_connections_are_the_wires(client: Client) -> None:
    nodes = list(client._server.primaries().values())
    for r in nodes:
        conn = r.connection_pool.make_connection()
        try:
            assert isinstance(conn, wire.TCPConnection)
            assert isinstance(conn._parser, wire._Parser)  # the zero-copy reply parser
        finally:
            conn.disconnect()


@pytest.mark.parametrize("size", [1000, wire.BIG_REPLY - 1, wire.BIG_REPLY, 3_000_000])
def test_parts_go_out_unjoined_and_large_replies_come_back_in_a_buffer_of_their_own(server: Server,
                                                                                      size: int) -> None:
    r = wire.connect(server.address, server.raw.connection_pool.connection_kwargs["password"], zero_copy=True,
                     protocol=2)
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    head = b"HEAD"
    try:
        r.execute_command("SET", "w", wire.Parts([head, memoryview(data)]))
        got = r.execute_command("GET", "w")
        assert bytes(got) == head + data.tobytes()
        assert type(got) is (bytearray if len(got) >= wire.BIG_REPLY else bytes)
        assert server.raw.strlen("w") == size + 4
    finally:
        r.delete("w")
        r.close()


def test_one_write_exchanges(server: Server) -> None:
    """The direct path's exchange (what run_model and the inference worker send): replies in order, an
    error reply in its place; with until_error the replies end at the first error."""
    password = server.raw.connection_pool.connection_kwargs["password"]
    d = Direct(parse_address(server.address), password, timeout=30, name="simctl-test-exchange")
    try:
        server.raw.delete("q", "l")
        out = d.call([("RPUSH", "q", b"req"), ("LPOP", "q"), ("SET", "l", "x"), ("LPUSH", "l", "y"), ("GET", "l")])
        assert out[:3] == [1, b"req", b"OK"]
        assert isinstance(out[3], redis.ResponseError) and "WRONGTYPE" in str(out[3])  # in its place
        assert out[4] == b"x"
        assert "name=simctl-test-exchange" in server.raw.execute_command("CLIENT", "LIST").decode()
        out = d.call([("LPUSH", "l", "y"), ("BLPOP", "none", 30)], until_error=True)  # not waited for
        assert len(out) == 1 and isinstance(out[0], redis.ResponseError)
        assert d.call([("GET", "l")]) == [b"x"]  # a new connection
    finally:
        server.raw.delete("q", "l")
        d.close()


def test_quiet_tells_a_subscription_with_a_message_waiting(server: Server) -> None:
    """The inference worker reads its change channel only when wire.quiet says a message waits."""
    password = server.raw.connection_pool.connection_kwargs["password"]
    r = wire.connect(server.address, password, protocol=2)
    sub = r.pubsub(ignore_subscribe_messages=True)
    try:
        sub.subscribe("simctl-test-quiet")
        wait_until(lambda: not wire.quiet(sub), "the subscription's confirmation")
        assert sub.get_message(timeout=5) is None and wire.quiet(sub)
        server.raw.publish("simctl-test-quiet", "a")
        server.raw.publish("simctl-test-quiet", "b")
        wait_until(lambda: not wire.quiet(sub), "the messages to arrive")
        assert sub.get_message(timeout=5)["data"] == b"a"
        assert not wire.quiet(sub)  # the second, in redis-py's buffer or on the socket
        assert sub.get_message(timeout=5)["data"] == b"b" and wire.quiet(sub)
    finally:
        sub.close()
        r.close()


def test_a_cluster_command_goes_to_the_node_of_its_slot(cluster: list[Server]) -> None:
    c = make_client(",".join(n.address for n in cluster))
    try:
        rc = c._r
        for i in range(20):
            key = f"k{i}"
            direct = wire.node_client(rc, key)
            assert direct is rc.get_redis_connection(rc.get_node_from_key(key))
            name = wire.node_of(rc, key).name
            assert rc.keyslot(key) in wire.node_slots(rc, name)
        assert sorted(wire.primaries(rc)) == sorted(n.address for n in cluster)
        assert sum(len(wire.node_slots(rc, name)) for name in wire.primaries(rc)) == 16384
    finally:
        c.close()
