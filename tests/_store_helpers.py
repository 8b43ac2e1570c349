"""Ports for the stores the tests start (shared by the store test modules)."""

from __future__ import annotations

import random
import socket


def port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of 127.0.0.1 now."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(n: int = 1, cluster: bool | None = None) -> int:
    """A base port such that it and the next n-1 are free, and for a cluster
    (``cluster``, by default n >= 3) their bus ports (+10000) too."""
    cluster = n >= 3 if cluster is None else cluster
    for _ in range(200):
        base = random.randrange(20000, 30000)
        ports = list(range(base, base + n)) + ([p + 10000 for p in range(base, base + n)] if cluster else [])
        if all(map(port_free, ports)):
            return base
    raise AssertionError("no free ports")
