"""The one address parser (simctl.store.address) and the one connector
(simctl.store.wire.connect): every spelling of a store address that SSDB,
Client(address=...), the supervisor, the worker, the orchestrator and the CLI
meet, IPv6 in brackets included; then real redis-servers reached through each
(an IPv6 loopback server, a Unix socket given as a URL and as a bare path)."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from simctl import ConfigError
from simctl.store import Client
from simctl.store.address import Address, parse_address, parse_addresses, same_server
from simctl.store.wire import connect

REDIS_SERVER = "/usr/bin/redis-server"
PASSWORD = "pw-" + secrets.token_hex(8)


@pytest.mark.parametrize("text, host, port, path, canonical", [
    ("localhost:6379", "localhost", 6379, "", "localhost:6379"),
    ("  127.0.0.1:1 ", "127.0.0.1", 1, "", "127.0.0.1:1"),
    ("tcp://node-3.cluster:65535", "node-3.cluster", 65535, "", "node-3.cluster:65535"),
    ("[::1]:6379", "::1", 6379, "", "[::1]:6379"),
    ("[fe80::1%eth0]:7000", "fe80::1%eth0", 7000, "", "[fe80::1%eth0]:7000"),
    ("tcp://[2001:db8::7]:6380", "2001:db8::7", 6380, "", "[2001:db8::7]:6380"),
    ("::1:6379", "::1", 6379, "", "[::1]:6379"),  # unbracketed, as earlier versions read it
    ("unix:///tmp/s.sock", "", 0, "/tmp/s.sock", "unix:///tmp/s.sock"),
    ("/run/user/1/db.sock", "", 0, "/run/user/1/db.sock", "unix:///run/user/1/db.sock"),
])
def test_every_spelling_of_an_address(text, host, port, path, canonical):
    a = parse_address(text)
    assert (a.host, a.port, a.path) == (host, port, path)
    assert str(a) == canonical and parse_address(str(a)) == a  # the canonical form reads back the same
    assert a.is_unix == bool(path)
    assert a.sockaddr() == (path if path else (host, port))


@pytest.mark.parametrize("text", ["localhost", "localhost:", ":6379", "host:0", "host:65536", "host:http",
                                  "[::1]", "[::1]6379", "[]:6379", "[127.0.0.1]:6379", "a b:1", "unix://",
                                  "unix://relative.sock", "relative.sock", ""])
def test_what_is_not_an_address(text):
    with pytest.raises(ConfigError, match=r"Client: address .* is not host:port, \[ipv6\]:port or "
                                          r"unix:///path/to.sock"):
        parse_address(text, "Client")


def test_lists_of_addresses():
    assert parse_addresses(None) == []
    assert parse_addresses("") == [] and parse_addresses(" , ") == []
    got = parse_addresses("h1:1,[::1]:2, unix:///s ,")
    assert [str(a) for a in got] == ["h1:1", "[::1]:2", "unix:///s"]
    assert parse_addresses(["h1:1", "[::1]:2"]) == got[:2]
    assert parse_addresses([Address("h", 3)]) == [Address("h", 3)]
    with pytest.raises(ConfigError, match="flush_db: address entries must be strings, got 3"):
        parse_addresses(["h:1", 3], "flush_db")  # type: ignore[list-item]


def test_one_server_under_two_names():
    assert same_server(parse_address("localhost:6379"), parse_address("127.0.0.1:6379"))
    assert same_server(parse_address("[::1]:6379"), parse_address("::1:6379"))
    assert not same_server(parse_address("localhost:6379"), parse_address("127.0.0.1:6380"))
    assert not same_server(parse_address("unix:///a"), parse_address("127.0.0.1:6379"))
    assert same_server(parse_address("/a"), parse_address("unix:///a"))
    assert not same_server(parse_address("no-such-host.invalid:1"), parse_address("127.0.0.1:1"))


# -- real servers, reached through the one connector ----------------------------------------------


def _free_v6_port() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def v6_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server on the IPv6 loopback only, with a Unix socket: (port, socket path)."""
    root = tmp_path_factory.mktemp("v6")
    port = _free_v6_port()
    sock = root / "redis.sock"
    (root / "redis.conf").write_text("\n".join([
        f"port {port}", "bind ::1", f"dir {root}", 'save ""', "appendonly no", f"requirepass {PASSWORD}",
        f"unixsocket {sock}", "unixsocketperm 700"]) + "\n")
    with open(root / "redis.log", "wb") as out:
        proc = subprocess.Popen([REDIS_SERVER, str(root / "redis.conf")], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        r = connect(f"[::1]:{port}", PASSWORD)
        for _ in range(200):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, (root / "redis.log").read_text()
                time.sleep(0.05)
        r.close()
        yield port, sock
    finally:
        proc.kill()
        proc.wait()


def test_an_ipv6_store_is_reached_by_its_bracketed_address(v6_server, monkeypatch):
    port, _ = v6_server
    r = connect(f"[::1]:{port}", PASSWORD, decode_responses=True)
    assert r.set("k", "v") and r.get("k") == "v"
    r.close()
    monkeypatch.setenv("SSDB", f"[::1]:{port}")
    monkeypatch.setenv("SSDB_PASSWORD", PASSWORD)
    with Client() as c:
        assert c.addresses == [f"[::1]:{port}"] and not c.is_cluster
        c.flush_db()
        c.put_tensor("t", [1, 2, 3])
        assert c.get_tensor("t").tolist() == [1, 2, 3]
        c.flush_db(f"[::1]:{port}")  # a server named the way it was given
        c.flush_db(f"::1:{port}")  # and another spelling of it
        assert not c.tensor_exists("t")


def test_a_socket_by_url_or_bare_path(v6_server):
    _, sock = v6_server
    for address in (f"unix://{sock}", str(sock)):
        with Client(address=address, password=PASSWORD) as c:
            assert c.addresses == [f"unix://{sock}"]
            c.put_tensor("s", [4.0])
            assert c.get_tensor("s").tolist() == [4.0]
        r = connect(address, PASSWORD)
        assert r.exists("s") == 1
        r.close()
