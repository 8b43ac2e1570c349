"""Free ports for a store that was given none: ``create_database()`` and
``colocate_db_tcp()`` pick them, so that two experiments (or two users) on a
shared node do not collide on a fixed default."""

from __future__ import annotations

import random
import socket
import threading

#: a Redis Cluster node's bus listens on its port + this
BUS_OFFSET = 10000
#: ports handed out by this process (a store is often made before the previous one binds its ports)
_HANDED_OUT: set[int] = set()
_LOCK = threading.Lock()


def port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` now, on any local address."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (one may take any of them at any moment)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            lo, hi = map(int, fh.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(n: int = 1, cluster: bool = False) -> int:
    """A base port such that it and the next ``n - 1`` are free here (and,
    for a ``cluster``, each one's bus port + 10000), outside the kernel's
    ephemeral range and not handed out before by this process."""
    lo, hi = _ephemeral_range()
    top = 65535 - n - (BUS_OFFSET if cluster else 0)
    with _LOCK:
        for _ in range(5000):
            base = random.randrange(10000, top)
            ports = list(range(base, base + n))
            ports += [p + BUS_OFFSET for p in ports] if cluster else []
            if any(lo <= p <= hi or p in _HANDED_OUT for p in ports):
                continue
            if all(map(port_free, ports)):
                _HANDED_OUT.update(ports)
                return base
    raise OSError(f"found no {n} free port(s){' with their cluster bus ports' if cluster else ''} between 10000 "
                  f"and 65535 outside the ephemeral range {lo}-{hi}; give port= explicitly")
