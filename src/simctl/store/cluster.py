"""Forming a store's Redis Cluster: primaries, their replicas, and where each
server runs.

A cluster store of ``db_nodes`` primaries with ``replicas=R`` has
``db_nodes * (1 + R)`` servers, server ``i`` on port ``port + i``: servers
``0 .. db_nodes - 1`` are the primaries, server ``i >= db_nodes`` replicates
primary ``i % db_nodes`` (:func:`primary_of`), the equivalent of
``redis-cli --cluster create --cluster-replicas R``. With ``hosts=``, primary
``p`` runs on ``hosts[p % len(hosts)]`` and its ``r``-th replica on
``hosts[(p + r + 1) % len(hosts)]`` (:func:`host_of`): another host than its
primary's whenever there are at least ``R + 1`` hosts.

The driver forms the cluster once every server answers (:func:`form`): CLUSTER
MEET between every two servers, ADDSLOTS of the slots no server holds yet to
the primaries, CLUSTER REPLICATE on each replica that replicates nothing yet,
then it asks every server, every :data:`POLL` seconds (no fixed wait, no
growing back-off), until every one says the cluster is ok (every slot
served), every replica's link to its primary is up, and every server knows
exactly the others at their addresses of this start (each announces its own,
``cluster-announce-ip``). The server itself sets the floor: a primary says
ok no sooner than 2 s after it started (``CLUSTER_WRITABLE_DELAY`` in Redis
7.0's and Valkey 9.1's cluster code, not configurable), and until then it
answers every command on a key with ``CLUSTERDOWN``; forming the cluster
overlaps that delay (benchmarks/README.md, "Feature store server"). A
cluster started again from its saved state (``shard-<i>.nodes.conf``) keeps
its roles, even where a failover swapped them. Replicas log in to their primary as the ``simctl-replica`` user
(:mod:`simctl.store.roles`). When a primary is lost, its replica takes over
by itself once the other primaries agree it failed (``cluster-node-timeout``,
2 s; a majority of the primaries must live).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from ..core.errors import SimctlError
from .protocol import own_slots

SLOTS = 16384
#: seconds between two questions to the servers while the cluster forms (each costs a few us of a server's time)
POLL = 0.01


def primary_of(i: int, primaries: int) -> int | None:
    """The primary server ``i`` replicates (None: ``i`` is a primary)."""
    return None if i < primaries else i % primaries


def host_of(i: int, primaries: int, hosts: Sequence[str]) -> str:
    """The host of server ``i`` among ``hosts`` (see the module docstring)."""
    p = i % primaries
    return hosts[(p + i // primaries) % len(hosts)]


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def info_of(client: Any, section: str = "cluster") -> dict[str, str]:
    """``CLUSTER INFO`` (``section="cluster"``) or ``INFO <section>`` as a dict."""
    text = client.execute_command("CLUSTER", "INFO") if section == "cluster" else \
        client.execute_command("INFO", section)
    if isinstance(text, dict):  # a client that parses the reply itself
        return {k: str(v) for k, v in text.items()}
    return dict(line.split(":", 1) for line in _text(text).splitlines() if ":" in line)


def myself(client: Any) -> tuple[str, bool, str, set[int]]:
    """What a server says of itself in ``CLUSTER NODES``: its id, whether it
    is a replica, the id of its primary ('' for none) and its slots."""
    nodes = _text(client.execute_command("CLUSTER", "NODES"))
    for line in nodes.splitlines():
        parts = line.split()
        if len(parts) > 7 and "myself" in parts[2].split(","):
            replica = "slave" in parts[2].split(",")
            return parts[0], replica, parts[3] if replica else "", own_slots(nodes)
    raise SimctlError(f"a cluster node did not say which node it is in CLUSTER NODES: {nodes[:200]!r}")


def knows_only(client: Any, addresses: Sequence[str]) -> bool:
    """Whether the server knows exactly the servers at ``addresses``, each
    connected (no stale address of an earlier start, no handshake left)."""
    seen = set()
    for line in _text(client.execute_command("CLUSTER", "NODES")).splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        flags = parts[2].split(",")
        if parts[7] != "connected" or any(f in flags for f in ("fail", "fail?", "handshake", "noaddr")):
            return False
        seen.add(parts[1].split("@")[0])
    return seen == set(addresses)


def _ok(client: Any, addresses: Sequence[str]) -> bool:
    info = info_of(client)
    if not (info.get("cluster_state") == "ok" and int(info.get("cluster_slots_assigned", 0)) == SLOTS
            and int(info.get("cluster_known_nodes", 0)) >= len(addresses) and knows_only(client, addresses)):
        return False
    replication = info_of(client, "replication")
    return replication.get("role") != "slave" or replication.get("master_link_status") == "up"


def form(clients: Sequence[Any], addresses: Sequence[str], hosts: Sequence[tuple[str, int]], primaries: int,
         deadline: float) -> None:
    """Join the servers of ``clients`` (at ``addresses``, ``hosts`` giving
    each one's ``(host, port)``) into one cluster of ``primaries`` primaries,
    the others their replicas (see the module docstring); wait until
    ``deadline`` (monotonic) for every server to be ok and to know exactly
    the others, at their addresses of this start. SimctlError when it is not
    by then."""
    # every server meets every other at its address of this start: a cluster started again from its saved
    # state elsewhere (other nodes, other ports) knows its members at their old addresses, which gossip from
    # one server alone does not correct everywhere (issue 18)
    for k, c in enumerate(clients):
        for host, port in [*hosts[:k], *hosts[k + 1:]]:
            c.execute_command("CLUSTER", "MEET", host, port)
    selves = [myself(c) for c in clients]
    owned = set().union(*(slots for _, _, _, slots in selves))
    missing = sorted(set(range(SLOTS)) - owned)
    takers = [c for c, (_, replica, _, _) in zip(clients[:primaries], selves) if not replica]
    for k, c in enumerate(takers):
        share = missing[k * len(missing) // len(takers):(k + 1) * len(missing) // len(takers)]
        if share:
            c.execute_command("CLUSTER", "ADDSLOTS", *share)
    for i in range(primaries, len(clients)):
        node_id, replica, _, slots = selves[i]
        if replica or slots:
            continue  # a cluster started again: it keeps the roles it had
        p = primary_of(i, primaries) or 0
        target = selves[p][2] if selves[p][1] else selves[p][0]  # a primary swapped by a failover: its primary
        while True:
            try:
                clients[i].execute_command("CLUSTER", "REPLICATE", target)
                break
            except redis.ResponseError as exc:  # the primary not known here yet: MEET's gossip is on its way
                if "unknown node" not in str(exc).lower() or time.monotonic() + POLL > deadline:
                    raise SimctlError(f"server {i} of the cluster could not become a replica of server {p} "
                                      f"({hosts[p][0]}:{hosts[p][1]}): {exc}") from None
                time.sleep(POLL)
    while not all(_ok(c, addresses) for c in clients):
        if time.monotonic() + POLL > deadline:
            states = [f"{info_of(c).get('cluster_state', '?')}/{info_of(c, 'replication').get('role', '?')}"
                      for c in clients]
            raise SimctlError(f"the cluster of {primaries} primaries and {len(clients) - primaries} replicas was "
                              f"not ok in time (cluster_state/role per server: {', '.join(states)})")
        time.sleep(POLL)
