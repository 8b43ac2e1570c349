"""Slurm jobs that wait for nodes the experiment itself holds (issue 21).

A batch job pending for ``Resources`` (or ``Priority``) on a partition whose
nodes run the experiment's own jobs is worth a word: which nodes, which of the
experiment's jobs hold them, what to change. When those jobs run until
stopped (a feature store) and what they hold leaves too few nodes or CPUs
for the pending job, it can never start while they run: it is reported
FAILED (and cancelled) instead of waited on forever.

Everything here is pure: it reads one ``squeue`` listing (the columns of
:data:`SQUEUE_FORMAT` then :data:`PLACEMENT_FORMAT`) and the partitions'
nodes and CPUs (the cluster's ``slurm.conf``, else ``sinfo -h -N -o %P|%N|%c``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import attrs
from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet, NodeSetException

#: the columns squeue lists for the status of every job simctl watches
SQUEUE_FORMAT = "JobArrayID:|,State:|,Reason:|,exit_code:|"
#: the columns after them that say where a job runs, or what it asks for while pending
PLACEMENT_FORMAT = "NodeList:|,NumNodes:|,NumCPUs:|,Partition:|,OverSubscribe:|,ReqNodes:|"
#: pending reasons that mean "waiting for nodes or CPUs to free up"
WAITING = frozenset({"Resources", "Priority"})


def hostnames(text: str) -> list[str]:
    """``"vm[1-3],login"`` -> the node names (``""``, ``(null)``, ``N/A`` -> none)."""
    text = text.strip()
    if not text or text in ("(null)", "N/A", "None"):
        return []
    try:
        return list(NodeSet(text, resolver=RESOLVER_NOGROUP))
    except NodeSetException:
        return [text]


@attrs.frozen
class Placement:
    """Where a job runs (or what it asks for while pending), from squeue."""

    job_id: str
    state: str
    reason: str
    nodes: tuple[str, ...]
    num_nodes: int
    cpus: int
    partition: str
    exclusive: bool
    required: tuple[str, ...]


def _int(text: str) -> int:
    return int(text) if text.strip().isdigit() else 0


def parse_placements(text: str) -> dict[str, Placement]:
    """The placement of each job of a ``squeue -O`` listing with :data:`SQUEUE_FORMAT`
    then :data:`PLACEMENT_FORMAT` (lines with fewer columns are left out)."""
    out: dict[str, Placement] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 10 or not parts[0]:
            continue
        job_id, state, reason, _, nodes, num_nodes, cpus, partition, oversubscribe, required = parts[:10]
        out[job_id] = Placement(job_id, state.split()[0] if state else "", reason, tuple(hostnames(nodes)),
                                _int(num_nodes), _int(cpus), partition, oversubscribe == "NO",
                                tuple(hostnames(required)))
    return out


def parse_sinfo(text: str) -> dict[str, dict[str, int]]:
    """``sinfo -h -N -o %P|%N|%c`` -> CPUs of each node, by partition (the
    default partition's ``*`` dropped)."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3:
            continue
        out.setdefault(parts[0].rstrip("*"), {})[parts[1]] = _int(parts[2].rstrip("+"))
    return out


def parse_slurm_conf(text: str) -> tuple[dict[str, dict[str, int]], str]:
    """The CPUs of every node by partition, and the default partition, from a
    ``slurm.conf``'s ``NodeName=`` (``CPUs=``, else sockets x cores x threads;
    ``NodeName=DEFAULT`` lines) and ``PartitionName=`` (``Nodes=``, ``ALL``,
    ``Default=YES``) lines. Read without running a command, so a batch script
    that depends on it stays a pure function of the job and this file."""
    cpus_of: dict[str, int] = {}
    default_cpus, parts, default = 1, {}, ""
    for raw in text.splitlines():
        words = [w.split("=", 1) for w in raw.split("#", 1)[0].split() if "=" in w]
        keys = {k.lower(): v for k, v in words}
        if "nodename" in keys:
            cpus = _int(keys.get("cpus", ""))
            if not cpus and any(k in keys for k in ("sockets", "corespersocket", "threadspercore")):
                cpus = 1
                for k in ("sockets", "corespersocket", "threadspercore"):
                    cpus *= max(1, _int(keys.get(k, "1")))
            cpus = cpus or default_cpus
            if keys["nodename"] == "DEFAULT":
                default_cpus = cpus
            else:
                cpus_of.update(dict.fromkeys(hostnames(keys["nodename"]), cpus))
        elif "partitionname" in keys and keys["partitionname"] != "DEFAULT":
            nodes = keys.get("nodes", "")
            names = list(cpus_of) if nodes.upper() == "ALL" else hostnames(nodes)
            parts[keys["partitionname"]] = {n: cpus_of.get(n, default_cpus) for n in names}
            if keys.get("default", "").upper() == "YES":
                default = keys["partitionname"]
    return parts, default


@attrs.frozen
class Blocked:
    """A pending job that waits for nodes the experiment's own jobs hold."""

    job_id: str
    #: node -> the experiment's running jobs on it
    held: Mapping[str, tuple[str, ...]]
    #: True when the holders run until stopped and leave too little for the job: it never starts
    never: bool
    message: str


def blocked(jobs: Mapping[str, Placement], partitions: Mapping[str, Mapping[str, int]],
            until_stopped: Collection[str], names: Mapping[str, str]) -> dict[str, Blocked]:
    """Each pending job of ``jobs`` that waits (``Resources``, ``Priority``) on
    nodes that other jobs of ``jobs`` run on. ``until_stopped``: the ids of
    those that never end by themselves; ``names``: a job's name for messages."""
    running = [p for p in jobs.values() if p.state == "RUNNING" and p.nodes]
    out: dict[str, Blocked] = {}
    for p in jobs.values():
        if p.state != "PENDING" or p.reason.split(",")[0].strip() not in WAITING:
            continue
        cpus_of = partitions.get(p.partition, {})
        candidates = list(p.required) or list(cpus_of)
        held: dict[str, list[str]] = {}
        for h in running:
            for node in h.nodes:
                if node in candidates:
                    held.setdefault(node, []).append(h.job_id)
        if not held:
            continue
        never = _never(p, candidates, cpus_of, [h for h in running if h.job_id in until_stopped])
        out[p.job_id] = Blocked(p.job_id, {n: tuple(j) for n, j in held.items()}, never,
                                _message(p, held, never, until_stopped, names))
    return out


def _never(p: Placement, candidates: list[str], cpus_of: Mapping[str, int], forever: list[Placement]) -> bool:
    """Whether ``p`` cannot start while the jobs ``forever`` run, whatever else ends."""
    if not forever or not cpus_of:
        return False
    free = {n: cpus_of.get(n, 0) for n in candidates}
    for h in forever:
        share = -(-h.cpus // max(1, len(h.nodes)))  # CPUs per node, rounded up
        for node in h.nodes:
            if node in free:
                free[node] = 0 if (h.exclusive or p.exclusive) else free[node] - share
    nodes = max(1, p.num_nodes)
    per_node = 1 if p.exclusive else -(-max(1, p.cpus) // nodes)
    usable = [n for n, c in free.items() if c >= per_node and c > 0]
    if p.required:
        return len(usable) < len(p.required)
    return len(usable) < nodes or sum(free[n] for n in usable) < (0 if p.exclusive else p.cpus)


def _message(p: Placement, held: Mapping[str, list[str]], never: bool, until_stopped: Collection[str],
             names: Mapping[str, str]) -> str:
    holders = sorted({j for js in held.values() for j in js})
    who = ", ".join(f"{j} ({names.get(j, '?')}{', runs until stopped' if j in until_stopped else ''})"
                    for j in holders)
    ask = (f"{p.num_nodes} node(s), exclusive" if p.exclusive else f"{p.num_nodes} node(s), {p.cpus} CPU(s)")
    head = (f"pending ({p.reason}): asks for {ask} in partition {p.partition!r}, whose node(s) "
            f"{','.join(sorted(held))} this experiment's own running job(s) hold: {who}")
    fix = ("stop them first, or ask for fewer CPUs or nodes (batch settings' nodes, batch_args ntasks; no "
           "'exclusive'), or put them on other nodes (hosts=, set_hostlist, another partition)")
    if never:
        return f"can never start while they run: {head}; it was cancelled. To let it start: {fix}"
    return f"{head}; it starts when they free enough of them. If they never end: {fix}"
