"""Store addresses: the one parser of what ``SSDB``, ``Client(address=...)``,
the supervisor, the worker, the orchestrator and the CLI call an address.

An address is one of

* ``host:port`` (``tcp://host:port`` too), the host a name or an IPv4 address;
* ``[v6]:port``, an IPv6 address in brackets (``[::1]:6379``); an unbracketed
  ``::1:6379`` is read as host ``::1``, port 6379, as earlier versions did;
* ``unix:///path/to.sock``, or the socket's absolute path alone (``/path/to.sock``).

Several are separated by commas (a cluster's shards). :func:`parse_addresses`
reads them into :class:`Address` records, whose ``str`` is the canonical form
(brackets around an IPv6 host, ``unix://`` before a socket path). Nothing here
imports redis-py: the supervisor uses it before any client exists; opening a
connection is :func:`simctl.store.wire.connect`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

import attrs

from ..core.errors import ConfigError

UNIX = "unix://"
TCP = "tcp://"


@attrs.frozen
class Address:
    """One server's address: a TCP ``host`` and ``port``, or a Unix socket ``path``."""

    host: str = ""
    port: int = 0
    #: the socket's path ("" for TCP)
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    def __str__(self) -> str:
        if self.path:
            return UNIX + self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def sockaddr(self) -> str | tuple[str, int]:
        """What ``socket.connect`` takes: the socket's path, or ``(host, port)``."""
        return self.path if self.path else (self.host, self.port)


def parse_address(text: str, what: str = "address") -> Address:
    """The :class:`Address` ``text`` spells (see the module docstring);
    ConfigError naming ``what`` if it spells none."""
    if not isinstance(text, str):
        raise ConfigError(f"{what}: address entries must be strings, got {text!r}")
    item = text.strip().removeprefix(TCP)
    if item.startswith(UNIX) or item.startswith("/"):
        path = item.removeprefix(UNIX)
        if path.startswith("/") and "\0" not in path:
            return Address(path=path)
    else:
        host, _, port = item.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            ok = bool(host) and ":" in host
        else:
            ok = bool(host) and "[" not in host and "]" not in host
        if ok and port.isdigit() and 0 < int(port) < 65536 and not any(c.isspace() for c in host):
            return Address(host=host, port=int(port))
    raise ConfigError(f"{what}: address {text!r} is not host:port, [ipv6]:port or unix:///path/to.sock")


def parse_addresses(value: str | Iterable[str] | None, what: str = "address") -> list[Address]:
    """The addresses in ``value``: a comma-separated str or a list of them
    (empty entries are skipped; None is no address)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[Address] = []
    for item in items:
        if isinstance(item, Address):
            out.append(item)
        elif not isinstance(item, str) or item.strip():
            out.append(parse_address(item, what))
    return out


def same_server(a: Address, b: Address) -> bool:
    """Whether ``a`` and ``b`` name one server: equal, or TCP addresses of one
    port whose hosts resolve to one IP address."""
    if a == b:
        return True
    if a.is_unix or b.is_unix or a.port != b.port:
        return False
    return bool(_ips(a) & _ips(b))


def _ips(a: Address) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(a.host, a.port, type=socket.SOCK_STREAM)}
    except OSError:
        return set()
