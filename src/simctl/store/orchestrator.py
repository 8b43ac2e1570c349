"""The feature store's server side: the :class:`Orchestrator` entity.

``Experiment.create_database(...)`` is :func:`make_orchestrator`. An
orchestrator is an entity like a model: ``generate``, ``start``, ``stop``,
``get_status``, ``preview`` and ``summary`` treat it like any other. It runs
until stopped, and ``start`` returns once it is ready:

* ``db_nodes=1``: one server. ``db_nodes>=3``: a Redis Cluster of that many
  shards, every one of the 16,384 slots assigned (spread evenly) before
  ``start`` returns. ``db_nodes=2`` is refused (a cluster needs three).
  ``replicas=R`` (a cluster only) adds R replicas to each shard, servers
  ``db_nodes .. db_nodes * (1 + R) - 1`` on the next ports, placed on
  another host than their primary's when ``hosts=`` allows; a replica takes
  over by itself when its primary is lost (:mod:`simctl.store.cluster`).
  Every server is a step and a ``shard-<i>`` of its own (files, job key),
  and ``SSDB`` lists them all.
* Each shard is one process step running ``python -m simctl.store.supervisor``
  (see :mod:`simctl.store.supervisor`) on port ``port + i``; on a scheduler,
  shards are job steps inside an allocation, one batch job each outside one,
  or all in ONE batch job with ``batch=True``. A shard reports its address in
  ``<dir>/shard-<i>.addr``, so readiness needs no scheduler command.
* Ready (:meth:`Orchestrator.is_ready`, a question that changes nothing)
  means: every shard's address file of this launch exists and every shard
  answers PING with the password. The controller notices the address files
  with the experiment's file watcher. Then :meth:`Orchestrator.on_ready`,
  called once, forms a cluster (CLUSTER MEET, ADDSLOTS for the slots no
  shard holds yet, CLUSTER REPLICATE for the replicas) and waits until it
  reports ``cluster_state:ok`` on every server and every replica's link is
  up, before ``start`` returns.
* Where the shards run is the launcher's to say (``runs_on_this_host``):
  on this machine, ports and interfaces are checked here before anything
  starts and ``hosts=`` other than this one are refused.
* Entities started afterwards receive ``SSDB`` (``host:port`` of every shard,
  comma-separated), ``SSDB_CLUSTER`` (``1`` or ``0``), ``SSDB_USER`` (the
  members' user, ``simctl-member``), a TLS store's ``SSDB_TLS_CA`` and,
  through their environment only, ``SSDB_PASSWORD``.

Security: each orchestrator generates a password for each of its users
(:mod:`simctl.store.roles`: the driver's admin, the members, the inference
workers, replication; :func:`secrets.token_urlsafe`), and the ``default``
user is disabled. A member can read and write data and run models, never
administer, stop, reconfigure or copy out the store; :meth:`set_db_conf`,
``db.client()`` and ``simctl store`` are the admin's. Shards bind only to the
addresses of the chosen interface(s), never 0.0.0.0; the passwords reach
them through their environment (a 0600 file in batch jobs) and are in their
0600 configuration file as hashes, never on a command line; their directory
is mode 0700 and every file in it 0600. When ready, the orchestrator also
writes ``<dir>/store.json`` (mode 0600: ``name``, ``addresses``,
``cluster``, ``username`` and ``password`` of the admin, ``tls_ca``) for
tools that attach later; the shards take the credentials out of it when they
stop. ``tls=True``: the store speaks TLS only, with certificates of its own
authority (:mod:`simctl.store.tls`), for a store reached across nodes.

Persistence (``persistence=``): ``"everysec"`` (the default) keeps an
append-only file per shard (``shard-<i>.aof/``) flushed to disk every second,
so a crash loses at most about the last second of writes; ``"always"`` flushes
before every reply (nothing acknowledged is lost, writes are slower);
``"snapshot"`` saves a snapshot (``shard-<i>.rdb``) only when stopped (and at
``enable_checkpoints`` points); ``"off"`` (or ``persist=False``) keeps nothing.
A new orchestrator started on the same directory (same name and ``db_nodes``)
loads the data back; to start empty, use another directory, or
``generate(db, overwrite=True)``. A stop waits for the final save however
long it takes (its progress in the driver's log), unless ``stop_limit=``
seconds cut it, and then the shard's status says its data was not saved.

Faults (see :mod:`simctl.store.supervisor`): a shard's server that crashes is
restarted with its data, at most ``max_restarts`` times in a row; a cluster
keeps serving the keys of its healthy shards meanwhile, and the restarted
shard rejoins by itself. Each shard's supervisor tells what happens (data
loaded and from when, crashes and restarts, a failing disk, the final save)
in ``shard-<i>.events``, which the driver follows and logs (logger
``simctl.store``); a shard that ends while it should run, or whose final
save failed, is Failed with the reason (:meth:`Orchestrator.final_status`).
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..core import checks
from ..core.entity import Entity, Handoff, PlanContext
from ..core.errors import ConfigError, SimctlError
from ..core.files import EntityFiles, check_name
from ..core.hosts import expand as expand_hosts
from ..core.launcher import Launcher
from ..core.settings import BatchSettings, RunSettings
from ..core.status import JobStatus, Status
from ..core.steps import Launch, ProcessStep
from ..log import logger
from . import cluster, contract, known, roles, server as srv, tls as store_tls
from .address import Address, parse_addresses
from .ports import free_ports
from .protocol import check_devices
from .supervisor import MAX_RESTARTS, PASSWORD_ENV, PERSISTENCE, interface_addresses

if TYPE_CHECKING:  # the client (redis-py, numpy) is imported when first used
    from .client import Client

log = logger("store")

#: what a ready store records in its directory (mode 0600: ``name``, ``addresses``, ``cluster``,
#: the admin's ``username`` and ``password``, ``tls_ca``), for tools that attach later
#: (:meth:`Orchestrator.attach`); the credentials are taken out when the store stops
STORE_FILE = srv.STORE_FILE

SLOTS = cluster.SLOTS
#: seconds a stop waits for a shard's supervisor beyond its ``stop_limit`` (it ends the save itself at the limit)
STOP_MARGIN = 30.0
#: the cluster bus listens on the client port + this
BUS_OFFSET = 10000
EVICTION_POLICIES = ("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru",
                     "volatile-lfu", "volatile-random", "volatile-ttl")
_MEMORY = re.compile(r"(?i)\d+\s*(b|k|kb|m|mb|g|gb)?")
#: make_orchestrator's keyword arguments besides the named ones
EXTRA_OPTIONS = {
    "db_identifier": "the orchestrator's name (default 'orchestrator')",
    "path": "its directory (default <exp_path>/<name>)",
    "time": "walltime of its batch job (batch=True)",
    "account": "account of its batch job", "queue": "queue or partition of its batch job",
    "server": "the server binary (redis-server, valkey-server, or a path)",
    "persist": "keep the data and load it when started again (default True; False: persistence='off')",
    "persistence": "how the data is kept: 'everysec' (default: an append-only file flushed every second), "
                   "'always' (flushed before every reply), 'snapshot' (saved when stopped), 'off'",
    "stop_limit": "most seconds a stop waits for the final save (default None: as long as it takes)",
    "max_restarts": "crashes in a row after which a shard's server is not restarted (default 5)",
    "ready_timeout": "seconds start() waits for it to be ready (default 60; 600 with batch=True)",
    "ml_devices": "devices with an inference worker beside each shard (default ['CPU']; [] for none)",
    "tls": "speak TLS only, with a certificate authority made for the store (default False)",
    "replicas": "replicas of each shard of a cluster (db_nodes >= 3), each taking over by itself when its primary "
                "is lost (default 0)",
}


def _bool(arg: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{arg} must be True or False; got {checks.show(value)}")
    return value


def _port(port: Any, db_nodes: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise ConfigError(f"port must be an int between 1 and 65535; got {checks.show(port)}")
    top = 65535 - (BUS_OFFSET if db_nodes >= 3 else 0) - (db_nodes - 1)
    if not 1 <= port <= top:
        why = (f"shards use ports {port}..{port + db_nodes - 1}" + (f" and their cluster buses {port + BUS_OFFSET}.."
               f"{port + BUS_OFFSET + db_nodes - 1}" if db_nodes >= 3 else ""))
        raise ConfigError(f"port must be between 1 and {top} for db_nodes={db_nodes} ({why}, at most 65535); "
                          f"got {port}")
    return port


def _replicas(replicas: Any, db_nodes: int) -> int:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ConfigError(f"replicas must be an int >= 0 (replicas of each shard; 0: none); got "
                          f"{checks.show(replicas)}")
    if replicas and db_nodes < 3:
        raise ConfigError(f"replicas={replicas} needs a Redis Cluster (db_nodes >= 3), whose primaries agree that "
                          f"one failed and let its replica take over; a single server (db_nodes={db_nodes}) has "
                          "nothing to decide that: use db_nodes>=3 with replicas, or replicas=0")
    return replicas


def _db_nodes(db_nodes: Any) -> int:
    if isinstance(db_nodes, bool) or not isinstance(db_nodes, int) or db_nodes < 1:
        raise ConfigError(f"db_nodes must be a positive int (1: one server; 3 or more: a Redis Cluster); "
                          f"got {checks.show(db_nodes)}")
    if db_nodes == 2:
        raise ConfigError("db_nodes=2 is refused: a Redis Cluster needs at least 3 shards to agree on its state, "
                          "and one server cannot be split in two; use db_nodes=1 (one server) or db_nodes>=3 "
                          "(a cluster)")
    return db_nodes


def _interfaces(interface: Any) -> list[str]:
    names = checks.string_list("interface", interface, split=lambda s: s.split(","), items=(str,))
    names = [n.strip() for n in names]
    if not names or not all(names):
        raise ConfigError(f"interface must name a network interface ('lo', 'ib0') or a list of them; got "
                          f"{checks.show(interface)}")
    return names


def _hosts(hosts: Any) -> list[str]:
    if hosts is None:
        return []
    return expand_hosts("hosts", hosts)


def _local_host(name: str) -> bool:
    return name in ("localhost", "127.0.0.1", socket.gethostname(), socket.gethostname().split(".")[0],
                    socket.getfqdn())


def _memory(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _MEMORY.fullmatch(value.strip()):
        return value.strip().replace(" ", "").lower()
    raise ConfigError(f"max memory must be a number of bytes (int >= 0) or a size such as '512mb', '3gb' "
                      f"(0: no limit); got {checks.show(value)}")


def _port_holder(port: int) -> str:
    """Who listens on ``port``, as far as this process may see ('' if unknown)."""
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                proc = psutil.Process(conn.pid)
                return f" (held by pid {conn.pid}, {proc.name()})"
    except (psutil.Error, OSError):
        pass
    return ""


def check_port_free(address: str, port: int, what: str) -> None:
    """ConfigError naming ``port`` if a server already listens on it at ``address``
    (checked the way the server binds: with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigError(f"cannot use port {port} on {address} for {what}: {exc.strerror}") from None
            raise ConfigError(f"port {port} on {address} is already in use{_port_holder(port)}, so {what} cannot "
                              "listen there (is another store, or this one, already running on it?); choose "
                              "another port=") from None


class StoreNotReady(SimctlError):
    """A store's directory has no ``store.json``: the store never became ready, or not yet."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} does not exist: the store writes it once ready")
        self.path = path


class StoreFileUnreadable(SimctlError):
    """A store's ``store.json`` cannot be read (``reason`` says why)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read the store's address and password from {path}: {reason}")
        self.path, self.reason = path, reason


class StoreStopped(SimctlError):
    """A store's ``store.json`` holds no credentials: the store stopped."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} holds no credentials: the store stopped (its shards take them out when they do)")
        self.path = path


class Orchestrator(Entity):
    """A feature store: one server, or a Redis Cluster of ``db_nodes`` shards.

    Made by ``Experiment.create_database`` (:func:`make_orchestrator`). Shard
    ``i`` is the job ``<name>/shard-<i>``.
    """

    runs_until_stopped = True
    name_argument = "db_identifier"

    def __init__(self, name: str, path: str, launcher: Launcher, *, port: int, db_nodes: int,
                 interfaces: list[str], batch: bool, hosts: list[str], run_settings: RunSettings,
                 batch_settings: BatchSettings | None, db_cpus: int, single_cmd: bool, server: str,
                 persist: bool, ready_timeout: float, ml_devices: Sequence[str] = ("CPU",),
                 persistence: str = PERSISTENCE[0], stop_limit: float | None = None,
                 max_restarts: int = MAX_RESTARTS, tls: bool = False, replicas: int = 0) -> None:
        self.name, self.path, self.launcher = name, path, launcher
        self.port, self.db_nodes, self.interfaces = port, db_nodes, interfaces
        #: replicas of each primary (a cluster's; :mod:`simctl.store.cluster`)
        self.replicas = replicas
        self.batch, self._hosts, self.run_settings, self.batch_settings = batch, hosts, run_settings, batch_settings
        self.db_cpus, self.single_cmd, self.server, self.persist = db_cpus, single_cmd, server, persist
        self.ready_timeout = ready_timeout
        #: how the data is kept (:data:`~simctl.store.supervisor.PERSISTENCE`)
        self.persistence = persistence if persist else "off"
        self.persist = self.persistence != "off"
        self.stop_limit, self.max_restarts = stop_limit, max_restarts
        #: how far the driver has read each shard's events file, by path
        self._events_read: dict[str, int] = {}
        self._events_lock = threading.Lock()
        #: devices with an inference worker beside each shard
        self.ml_devices = tuple(ml_devices)
        #: configuration directives given to every shard (set_max_memory, set_db_conf...)
        self.conf: dict[str, str] = {}
        self.params: dict[str, Any] = {}  # for generate(): an orchestrator has no parameters...
        self.files = EntityFiles()  # ...and no attached files
        #: the passwords of the store's users (roles.py): the driver is the admin
        self._secrets = roles.Secrets.generate()
        self._username: str | None = roles.ADMIN
        self._password = self._secrets.admin
        #: TLS only, with a certificate authority of the store's own (in its directory)
        self.tls = tls
        self._tls_ca: str | None = os.path.join(path, store_tls.CA_CERT) if tls else None
        self._addresses: list[str] = []
        self._started_on: list[str] = []  # host names, from the address files

    @classmethod
    def attach(cls, path: str | os.PathLike[str]) -> Orchestrator:
        """The orchestrator of the store that runs from the directory ``path``,
        from what it recorded there when it became ready (``store.json``: its
        name, addresses, the shards' hosts (:attr:`hosts`), the admin's user
        name and password, a TLS store's certificate authority), for a tool that attaches to a running store
        without the driver that started it (``simctl store``). It reads and
        connects as the admin (:meth:`client`, :meth:`get_address`,
        :meth:`is_active`, :meth:`password`), and so does a :class:`~simctl.Client`
        made in this process without credentials; it has no launcher, so it is not
        started or stopped through it. :class:`StoreNotReady` when there is
        no ``store.json``, :class:`StoreFileUnreadable` when it cannot be
        read, :class:`StoreStopped` when the store stopped (its credentials
        were taken out), SimctlError when it holds no store."""
        file = os.path.join(os.fspath(path), STORE_FILE)
        try:
            with open(file, encoding="utf-8") as fh:
                info = json.load(fh)
        except FileNotFoundError:
            raise StoreNotReady(file) from None
        except (OSError, ValueError) as exc:
            raise StoreFileUnreadable(file, str(exc)) from None
        try:
            addresses = parse_addresses(info.get("addresses") if isinstance(info, dict) else None, file)
        except ConfigError:
            addresses = []
        if addresses and isinstance(info.get("name"), str) and info.get("stopped") and "password" not in info:
            raise StoreStopped(file)
        if not addresses or not isinstance(info.get("name"), str) or not isinstance(info.get("password"), str):
            raise SimctlError(f"{file} does not hold a store's addresses")
        replicas = info["replicas"] if isinstance(info.get("replicas"), int) and info["replicas"] > 0 else 0
        db = cls(info["name"], os.path.dirname(file), None, port=addresses[0].port,  # type: ignore[arg-type]
                 db_nodes=len(addresses) // (1 + replicas), interfaces=[], batch=False, hosts=[],
                 run_settings=None, batch_settings=None, db_cpus=1, single_cmd=True,  # type: ignore[arg-type]
                 server="", persist=True, ready_timeout=60.0, tls=isinstance(info.get("tls_ca"), str),
                 replicas=replicas)
        db._username = info["username"] if isinstance(info.get("username"), str) else None
        db._password = info["password"]
        db._tls_ca = info["tls_ca"] if isinstance(info.get("tls_ca"), str) else None
        db._addresses = [str(a) for a in addresses]
        hosts = info.get("hosts")  # the shards' host names; a store.json written before they were recorded: the
        valid = isinstance(hosts, list) and len(hosts) == len(addresses) and all(isinstance(h, str) for h in hosts)
        db._started_on = hosts if valid else [a.host or "localhost" for a in addresses]  # addresses' hosts
        known.remember(db)  # a Client made in this process without credentials finds them (known.py)
        return db

    def __repr__(self) -> str:
        return (f"Orchestrator(name={self.name!r}, path={self.path!r}, port={self.port}, db_nodes={self.db_nodes}, "
                f"interface={self.interfaces!r}, batch={self.batch})")

    # -- what users read -------------------------------------------------------------------

    @property
    def username(self) -> str | None:
        """The store's admin user, as which the driver logs in (``simctl-admin``, :mod:`simctl.store.roles`)."""
        return self._username

    @property
    def password(self) -> str:
        """The admin user's password (generated for this orchestrator; the
        members get their own: see :meth:`handoff`)."""
        return self._password

    @property
    def tls_ca(self) -> str | None:
        """The certificate (PEM file) of the store's own certificate authority
        when it speaks TLS (``tls=True``), else None."""
        return self._tls_ca

    @property
    def num_shards(self) -> int:
        """How many shards (servers) the store has."""
        return self.db_nodes

    @property
    def servers(self) -> int:
        """How many servers the store runs: each shard's primary and its replicas."""
        return self.db_nodes * (1 + self.replicas)

    @property
    def is_cluster(self) -> bool:
        """Whether the store is a Redis Cluster (``db_nodes >= 3``)."""
        return self.db_nodes >= 3

    @property
    def hosts(self) -> list[str]:
        """The host names the shards run on once started (from their address
        files), else the hosts asked for with ``hosts=`` / :meth:`set_hosts`."""
        return list(self._started_on or self._hosts)

    def get_address(self) -> list[str]:
        """``host:port`` of every shard; SimctlError if it was never started."""
        if not self._addresses:
            raise SimctlError(f"orchestrator {self.name!r} has not been started, so it has no address yet; "
                              "start it first (exp.start(db))")
        return list(self._addresses)

    def client(self, **kwargs: Any) -> Client:
        """A :class:`simctl.Client` connected to this store as its admin user
        (its addresses, the admin's user and password, a TLS store's
        certificate authority), for the driver; keyword arguments go to
        ``Client`` (e.g. ``logger_name``). SimctlError if it was never started;
        :class:`~simctl.store.StoreConnectionError` if it no longer answers."""
        from .client import Client  # redis-py and numpy: start-up cost

        return Client(address=self.get_address(), username=self._username or "", password=self._password,
                      tls_ca=self._tls_ca or "", **kwargs)

    def is_active(self) -> bool:
        """Whether every shard answers (and, for a cluster, the cluster state is ok)."""
        if not self._addresses:
            return False
        try:
            with self._clients(self._addresses, timeout=2) as clients:
                for c in clients:
                    c.ping()
                return not self.is_cluster or all(_cluster_info(c).get("cluster_state") == "ok" for c in clients)
        except Exception:  # any failure to answer means not active
            return False

    # -- configuration -------------------------------------------------------------------------

    def set_db_conf(self, key: str, value: str | int) -> None:
        """Set a server configuration directive (``maxmemory``, ``maxclients``...)
        on every shard: at once with CONFIG SET (as the admin user) if the
        store runs, and at every later start. Keys simctl owns or refuses are
        refused here, each with its reason (:func:`simctl.store.server.refusal`:
        ``bind``, ``port``, ``protected-mode``, ``requirepass``, ``masteruser``,
        ``aclfile`` and the other ACL keys, ``dir``, ``dbfilename``, every
        ``enable-*`` and ``tls-*``...)."""
        key, text = srv.check_conf("set_db_conf", key, value)
        if self.is_active():
            try:
                with self._clients(self._addresses) as clients:
                    for c in clients:
                        c.config_set(key, text)
            except Exception as exc:
                raise ConfigError(f"set_db_conf({key!r}, {text!r}): the running store refused it: {exc}") from None
        self.conf[key] = text

    def set_max_memory(self, mem: str | int) -> None:
        """Most memory each shard uses for data (``'512mb'``, ``'3gb'``, bytes; 0: no limit)."""
        self.set_db_conf("maxmemory", _memory(mem))

    def set_eviction_strategy(self, strategy: str) -> None:
        """What a shard does at its memory limit: one of :data:`EVICTION_POLICIES`."""
        if strategy not in EVICTION_POLICIES:
            raise ConfigError(f"eviction strategy must be one of {', '.join(map(repr, EVICTION_POLICIES))}; got "
                              f"{checks.show(strategy)}")
        self.set_db_conf("maxmemory-policy", strategy)

    def set_max_clients(self, clients: int = 50_000) -> None:
        """Most clients connected to each shard at once."""
        self.set_db_conf("maxclients", checks.positive_int("clients", clients))

    def set_max_message_size(self, size: int = 1_073_741_824) -> None:
        """Largest value (bytes) a shard accepts in one request (at least 1 MiB)."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 << 20:
            raise ConfigError(f"max message size must be an int of bytes, at least 1048576 (1 MiB); got "
                              f"{checks.show(size)}")
        self.set_db_conf("proto-max-bulk-len", size)

    def enable_checkpoints(self, frequency: int) -> None:
        """Save a snapshot every ``frequency`` seconds when anything changed."""
        self.set_db_conf("save", f"{checks.positive_int('frequency', frequency)} 1")

    def set_cpus(self, num_cpus: int) -> None:
        """CPUs for each shard (the run command's cpus-per-task), from the next start."""
        self.db_cpus = checks.positive_int("num_cpus", num_cpus)
        self.run_settings.cpus_per_task = self.db_cpus if self.db_cpus > 1 else None
        if self.batch_settings is not None and hasattr(self.batch_settings, "set_cpus_per_task"):
            self.batch_settings.set_cpus_per_task(self.db_cpus)

    def set_walltime(self, walltime: Any) -> None:
        """Time limit of each shard (and of the batch job with ``batch=True``)."""
        self.run_settings.set_walltime(walltime)
        if self.batch_settings is not None:
            self.batch_settings.set_walltime(walltime)

    def set_hosts(self, host_list: str | list[str]) -> None:
        """Hosts to run the shards on: shard ``i`` on ``host_list[i % len]``."""
        hosts = _hosts(host_list)
        if not hosts:
            raise ConfigError("set_hosts needs at least one host name")
        self._check_hosts(self.launcher, hosts)
        self._hosts = hosts
        if self.batch_settings is not None:
            self.batch_settings.set_hostlist(sorted(set(hosts)))

    def set_batch_arg(self, arg: str, value: Any = None) -> None:
        """A flag for the batch job (only with ``batch=True``); not one that sizes or
        places the job (:meth:`placement_args`)."""
        if self.batch_settings is None:
            raise ConfigError(f"orchestrator {self.name!r} is not launched as a batch job (batch=False), so it "
                              f"has no batch arguments; create it with batch=True")
        self._refuse_placement(arg, batch=True)
        self.batch_settings.set(arg, value)

    def set_run_arg(self, arg: str, value: Any = None) -> None:
        """A flag for every shard's run command (``srun``...); not one that sizes or places
        the shards (:meth:`placement_args`). Refused where the shards run without a run
        command (the ``local`` launcher's default): nothing would pass the flag on."""
        self.launcher.check_run_args(
            {arg: value}, self.run_settings.run_command, f"orchestrator {self.name!r}'s shards",
            "leave set_run_arg out, or start the shards under a run command: create_database(run_command=...) "
            "with one of those, or a scheduler's launcher (slurm's srun, pbs's mpiexec...)")
        self._refuse_placement(arg, batch=False)
        self.run_settings.set(arg, value)

    def placement_args(self, batch: bool = False) -> tuple[str, ...]:
        """The flags of the shards' run command that the store's launch sets itself (one task
        per shard, on its host, in the store's directory, with its own output files), or with
        ``batch`` those of its batch job (name, output files, host list; its size is yours).
        Per launcher: ``placement_run_args`` / ``placement_batch_args`` of the settings."""
        if batch:
            return type(self.batch_settings).placement_batch_args if self.batch_settings is not None else ()
        return type(self.run_settings).placement_run_args.get(self.run_settings.run_command or "", ())

    def _refuse_placement(self, arg: str, batch: bool) -> None:
        owned = self.placement_args(batch)
        if isinstance(arg, str) and arg.strip().lstrip("-") in owned:
            what = "batch job" if batch else f"shards' {self.run_settings.run_command}"
            raise ConfigError(f"{'batch' if batch else 'run'} argument {arg!r} is set by the store's launch itself "
                              f"(one task per shard, on its host, with its own name, directory and output); the "
                              f"{what} flags it owns: {', '.join(map(repr, owned))}; leave {arg!r} out (set_hosts, "
                              "set_cpus, set_walltime place and size the store)")

    @staticmethod
    def _check_hosts(launcher: Launcher, hosts: list[str]) -> None:
        if launcher.runs_on_this_host:
            far = [h for h in hosts if not _local_host(h)]
            if far:
                raise ConfigError(f"hosts {far} are not this machine, and launcher {launcher.name!r} runs the "
                                  "shards here; leave hosts out, or use a scheduler's launcher")

    # -- the entity protocol ------------------------------------------------------------------

    def job_keys(self) -> list[str]:
        return [f"{self.name}/shard-{i}" for i in range(self.servers)]

    def run_dirs(self, exp_path: str, tag: str) -> list[tuple[Any, str]]:
        return [(self, os.path.join(exp_path, self.name))]

    def plan(self, ctx: PlanContext) -> list[Launch]:
        """One step per shard (or one batch job of them). Where the shards
        run on this machine, their ports are checked to be free first. Makes
        nothing on disk (:meth:`prepare` makes the directory)."""
        ctx.check(self.run_settings, self.batch_settings)
        if ctx.launcher.runs_on_this_host:
            try:
                addresses = interface_addresses(self.interfaces)
            except ValueError as exc:
                raise ConfigError(f"interface: {exc}") from None
            for address in addresses:
                for i in range(self.servers):
                    what = f"shard {i} of orchestrator {self.name!r}"
                    check_port_free(address, self.port + i, what)
                    if self.is_cluster:
                        check_port_free(address, self.port + i + BUS_OFFSET, f"the cluster bus of {what}")
        launch = uuid.uuid4().hex[:16]
        steps = [self._shard(i, launch, ctx.worker_plugins) for i in range(self.servers)]
        if self.batch_settings is not None:
            return [ctx.batch_job(self.name, self.path, self.batch_settings, steps)]
        return list(steps)

    def _shard(self, i: int, launch: str, plugins: Sequence[str] = ()) -> ProcessStep:
        rs = self.run_settings
        if self._hosts:
            rs = copy.deepcopy(rs)
            rs.set_hostlist([cluster.host_of(i, self.db_nodes, self._hosts)])
        argv = [sys.executable, "-m", "simctl.store.supervisor", "--index", str(i), "--port", str(self.port + i),
                "--dir", self.path, "--server", self.server, "--launch", launch]
        if self._tls_ca:
            argv += ["--tls-ca", self._tls_ca, "--tls-ca-key", os.path.join(self.path, store_tls.CA_KEY)]
        for name in self.interfaces:
            argv += ["--interface", name]
        if self.is_cluster:
            argv.append("--cluster")
        argv += ["--persistence", self.persistence, "--max-restarts", str(self.max_restarts)]
        if self.stop_limit is not None:
            argv += ["--stop-limit", f"{self.stop_limit:g}"]
        for key, value in self.conf.items():
            argv += ["--conf", f"{key}={value}"]
        for device in self.ml_devices:
            argv += ["--ml-device", device]
        if self.ml_devices:
            argv += plugins  # the experiment's plugins, for the inference workers
        secret_env = {PASSWORD_ENV: self._secrets.member, contract.STORE_SECRETS: self._secrets.encode()}
        return ProcessStep(name=f"{self.name}_{i}", argv=argv, cwd=self.path, secret_env=secret_env,
                           out=os.path.join(self.path, f"{self.name}_{i}.out"),
                           err=os.path.join(self.path, f"{self.name}_{i}.err"), run_settings=rs,
                           key=f"{self.name}/shard-{i}", entity=self,
                           ready_file=os.path.join(self.path, f"shard-{i}.addr"),
                           # the supervisor ends once the final save is done (or cut at stop_limit): never killed
                           # mid-way by the launcher; its output kept across starts
                           stop_grace=math.inf if self.stop_limit is None else self.stop_limit + STOP_MARGIN,
                           append_output=True)

    def prepare(self, steps: Sequence[ProcessStep]) -> None:
        """The orchestrator's directory (the shards' working directory), mode
        0700, every file in it 0600; the shards' output files made (or kept)
        with mode 0600, which the launcher keeps when it writes into them;
        with ``tls=True``, a new certificate authority
        (:func:`simctl.store.tls.make_ca`); the driver reads the shards'
        events from their end now."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        if os.stat(self.path).st_uid == os.getuid():
            os.chmod(self.path, 0o700)
        outputs = [p for s in steps for p in (s.out, s.err) if p]
        if self.batch_settings is not None:  # the batch job's output
            outputs += [os.path.join(self.path, f"{self.name}.batch.{x}") for x in ("out", "err")]
        if self.launcher is not None and self.launcher.batch_settings_class is not None:
            # the launcher's job scripts, if it submits any, in a directory of the user's alone
            os.makedirs(os.path.join(self.path, ".simctl-batch"), mode=0o700, exist_ok=True)
        for path in outputs:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        if self._tls_ca:
            store_tls.make_ca(self._tls_ca, os.path.join(self.path, store_tls.CA_KEY), self.name)
        with self._events_lock:
            for step in steps:
                path = _events_path(step)
                try:
                    self._events_read[path] = os.path.getsize(path)
                except OSError:
                    self._events_read[path] = 0

    def is_ready(self, steps: Sequence[ProcessStep]) -> bool:
        """Every shard of this launch reported its address and answers PING.
        A question only: nothing is written and the cluster is not touched
        (:meth:`on_ready` forms it)."""
        infos = self._reported(steps)
        if infos is None:
            return False
        try:
            with self._clients(_addresses(infos)) as clients:
                for c in clients:
                    c.ping()
        except Exception as exc:  # not ready yet
            log.debug("orchestrator %r not ready yet: %s", self.name, exc)
            return False
        return True

    def on_ready(self, steps: Sequence[ProcessStep]) -> None:
        """Once every shard answers: a cluster is formed (CLUSTER MEET, then
        ADDSLOTS for the slots no shard holds yet) and waited for until its
        state is ok on every shard; then the addresses are kept and
        ``store.json`` is written for tools that attach later."""
        self.on_events(steps)  # what the shards loaded, in the driver's log before it says the store is ready
        infos = self._reported(steps)
        if infos is None:
            raise SimctlError("a shard's address file changed or vanished after it was ready")
        addresses = _addresses(infos)
        if self.is_cluster:
            self._form_cluster(addresses, infos)
        self._addresses = addresses
        self._started_on = [str(info.get("hostname", info["host"])) for info in infos]
        if self._tls_ca:  # every shard made its certificate: no other is to be signed
            store_tls.remove(os.path.join(self.path, store_tls.CA_KEY))
        srv.write_private(os.path.join(self.path, STORE_FILE), json.dumps(
            {"name": self.name, "addresses": addresses, "cluster": self.is_cluster, "replicas": self.replicas,
             "username": self._username, "password": self._password, "tls_ca": self._tls_ca,
             "hosts": self._started_on}))

    def not_ready_reason(self, steps: Sequence[ProcessStep]) -> str:
        """Which shards did not report an address, or which reported one this
        driver's host cannot reach (a loopback address on another node; any
        address that does not answer from here), with this host's interfaces."""
        infos = [_read_json(step.ready_file or "") for step in steps]
        missing = [i for i, info in enumerate(infos) if info is None]
        if missing:
            return f"shard(s) {', '.join(map(str, missing))} reported no address (still queued, or starting)"
        here = socket.gethostname().split(".")[0]
        far = []
        for i, info in enumerate(infos):
            assert info is not None
            host, where = str(info.get("host", "")), str(info.get("hostname", "?")).split(".")[0]
            try:
                with socket.create_connection((host, int(info.get("port", 0))), timeout=2):
                    continue
            except (OSError, ValueError):
                pass
            loopback = host.startswith("127.") or host == "::1"
            far.append(f"shard {i} listens on {host}:{info.get('port')} on host {where}"
                       + (" (a loopback address: reachable only from that node)" if loopback and where != here
                          else ""))
        if not far:
            return ""
        return (f"{'; '.join(far)}, which this driver on {here} cannot reach (interface={self.interfaces!r}); "
                f"give an interface the driver's host shares with the nodes; this host's: {_host_interfaces()}")

    @staticmethod
    def _reported(steps: Sequence[ProcessStep]) -> list[dict[str, Any]] | None:
        """What every shard of this launch wrote in its address file, or None
        while one has not (a file left by an earlier launch does not count)."""
        infos = []
        for step in steps:
            info = _read_json(step.ready_file or "")
            if info is None or info.get("launch") != step.argv[step.argv.index("--launch") + 1]:
                return None
            infos.append(info)
        return infos

    def _form_cluster(self, addresses: list[str], infos: list[dict[str, Any]]) -> None:
        """Join the servers into one cluster of ``db_nodes`` primaries and
        their replicas (:func:`simctl.store.cluster.form`), waiting within
        ``ready_timeout`` until every server says it is ok."""
        deadline = time.monotonic() + self.ready_timeout
        with self._clients(addresses) as clients:
            cluster.form(clients, addresses, [(info["host"], int(info["port"])) for info in infos], self.db_nodes,
                         deadline)

    def event_files(self, steps: Sequence[ProcessStep]) -> list[str]:
        """Each shard's ``shard-<i>.events``, which its supervisor appends to."""
        return [_events_path(step) for step in steps]

    def on_events(self, steps: Sequence[ProcessStep]) -> None:
        """Log what the shards' supervisors told since the last look (data
        loaded, crashes and restarts, a failing disk, the final save's
        progress and end) in the driver's log (logger ``simctl.store``)."""
        with self._events_lock:
            for step in steps:
                path = _events_path(step)
                start = self._events_read.get(path, 0)
                try:
                    with open(path, "rb") as fh:
                        fh.seek(start)
                        data = fh.read()
                except OSError:
                    continue
                whole = data[:data.rfind(b"\n") + 1]  # a line still being written is read next time
                self._events_read[path] = start + len(whole)
                for event in _events(whole, _launch_of(step)):
                    level = {"warning": logging.WARNING, "error": logging.ERROR}.get(str(event.get("level")),
                                                                                     logging.INFO)
                    log.log(level, "orchestrator %r: %s", self.name, event.get("message", event))

    def final_status(self, step: ProcessStep, status: JobStatus) -> JobStatus:
        """A shard that ended: the reason its supervisor gave (its last event);
        Failed when its server ended while the store should run (a crash
        beyond ``max_restarts``, a SHUTDOWN from a client) or its data was not
        saved at the stop (a failed save, ``stop_limit``)."""
        ended = None
        for event in _events(_tail_bytes(_events_path(step)), _launch_of(step)):
            if event.get("event") == "exit":
                ended = event
        if ended is None:
            if status.status is Status.CANCELLED and status.returncode is not None and status.returncode < 0 \
                    and self.persist:
                return attrs.evolve(status, reason=f"{status.reason}; the shard's supervisor was killed before "
                                    "it said its data was saved: it may not have been")
            return status
        message = str(ended.get("message", ""))
        if ended.get("state") in ("failed", "unsaved"):
            return JobStatus(Status.FAILED, status.returncode, message)
        return attrs.evolve(status, reason=f"{status.reason}; {message}" if status.reason else message)

    def handoff(self, steps: Sequence[ProcessStep]) -> Handoff:
        """The store for the entities started after it: its addresses, the
        members' user and password, a TLS store's certificate authority; also
        under its name (``SSDB_<name>``...), for an entity given several stores."""
        env, secret_env = contract.store_env(self._addresses, self.is_cluster, self._secrets.member,
                                             user=roles.MEMBER, tls_ca=self._tls_ca, name=self.name)
        return Handoff(env=env, secret_env=secret_env)

    @contextlib.contextmanager
    def _clients(self, addresses: Sequence[str], timeout: float = 5) -> Iterator[list[Any]]:
        with self.shards(timeout, timeout, addresses, decode_responses=True) as clients:
            yield clients

    @contextlib.contextmanager
    def shards(self, connect_timeout: float = 5, command_timeout: float | None = 5,
               addresses: Sequence[str] | None = None, **options: Any) -> Iterator[list[Any]]:
        """A ``redis.Redis`` for each shard (of ``addresses``; default: the
        store's), logged in as the admin user (over TLS for a TLS store),
        closed at the end of the ``with``. Nothing is sent until they are used;
        ``options`` go to :func:`simctl.store.wire.connect`."""
        from . import wire  # redis-py: start-up cost

        clients = []
        try:
            for address in self.get_address() if addresses is None else addresses:
                clients.append(wire.connect(address, self._password, username=self._username, tls_ca=self._tls_ca,
                                            socket_connect_timeout=connect_timeout, socket_timeout=command_timeout,
                                            **options))
            yield clients
        finally:
            for c in clients:
                c.close()


def _events_path(step: ProcessStep) -> str:
    return os.path.join(step.cwd, f"shard-{step.argv[step.argv.index('--index') + 1]}.events")


def _launch_of(step: ProcessStep) -> str:
    return step.argv[step.argv.index("--launch") + 1]


def _tail_bytes(path: str, size: int = 65536) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read()
    except OSError:
        return b""


def _events(data: bytes, launch: str) -> Iterator[dict[str, Any]]:
    """The events of launch ``launch`` in ``data`` (JSON lines; others, and broken lines, are skipped)."""
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("launch") == launch:
            yield event


def _addresses(infos: list[dict[str, Any]]) -> list[str]:
    return [str(Address(info["host"], info["port"])) for info in infos]


def _host_interfaces() -> str:
    """This host's network interfaces with their IPv4 addresses (``hsn0 10.0.0.1, lo 127.0.0.1``)."""
    import psutil  # start-up cost: only for an error message

    return ", ".join(f"{name} {a.address}" for name, addrs in sorted(psutil.net_if_addrs().items())
                     for a in addrs if a.family == socket.AF_INET) or "none with an IPv4 address"


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


#: ``CLUSTER INFO`` as a dict
_cluster_info = cluster.info_of


def make_orchestrator(experiment: Any, port: int | None = None, db_nodes: int = 1, interface: str | list[str] = "lo",
                      batch: bool = False, hosts: str | list[str] | None = None, run_command: str | None = "auto",
                      db_cpus: int = 1, single_cmd: bool = True, **kwargs: Any) -> Orchestrator:
    """``Experiment.create_database``: an :class:`Orchestrator` for ``experiment``
    (its launcher and ``exp_path``). Every argument is checked here; nothing is
    written or started. Extra keyword arguments: see :data:`EXTRA_OPTIONS`.
    ``single_cmd`` is accepted for the documents' sake: each shard is always
    its own step."""
    unknown = sorted(set(kwargs) - set(EXTRA_OPTIONS))
    if unknown:
        raise ConfigError(f"create_database got unknown argument(s) {', '.join(map(repr, unknown))}; besides port, "
                          f"db_nodes, interface, batch, hosts, run_command, db_cpus and single_cmd it accepts: "
                          + "; ".join(f"{k} ({v})" for k, v in EXTRA_OPTIONS.items()))
    launcher: Launcher = experiment.launcher
    name = check_name("orchestrator", kwargs.get("db_identifier", "orchestrator"))
    db_nodes = _db_nodes(db_nodes)
    replicas = _replicas(kwargs.get("replicas", 0), db_nodes)
    servers = db_nodes * (1 + replicas)
    # no port given: free ones here (and their cluster bus ports), not a fixed default that collides on shared nodes
    port = _port(port, servers) if port is not None else free_ports(servers, cluster=db_nodes >= 3)
    interfaces = _interfaces(interface)
    batch = _bool("batch", batch)
    single_cmd = _bool("single_cmd", single_cmd)
    persist = _bool("persist", kwargs.get("persist", True))
    persistence = kwargs.get("persistence", PERSISTENCE[0] if persist else "off")
    if persistence not in PERSISTENCE:
        raise ConfigError(f"persistence must be one of {', '.join(map(repr, PERSISTENCE))}; got "
                          f"{checks.show(persistence)}")
    if not persist and persistence != "off":
        raise ConfigError(f"persist=False keeps nothing, but persistence={persistence!r} asks to keep the data; "
                          "give one of them")
    stop_limit = kwargs.get("stop_limit")
    if stop_limit is not None:
        checks.number("stop_limit", stop_limit, above=0)
    max_restarts = kwargs.get("max_restarts", MAX_RESTARTS)
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ConfigError(f"max_restarts must be an int >= 0 (0: never restart); got {checks.show(max_restarts)}")
    db_cpus = checks.positive_int("db_cpus", db_cpus)
    host_list = _hosts(hosts)
    path = kwargs.get("path")
    if path is not None and (not isinstance(path, (str, os.PathLike)) or not os.fspath(path)):
        raise ConfigError(f"path must be a directory path, got {checks.show(path)}")
    path = os.path.abspath(os.path.expanduser(os.fspath(path))) if path else os.path.join(experiment.exp_path, name)
    timeout = kwargs.get("ready_timeout", 600.0 if batch else 60.0)
    checks.number("ready_timeout", timeout, above=0)
    if batch and launcher.batch_settings_class is None:
        raise ConfigError(f"batch=True needs a launcher with a batch system (slurm, pbs, lsf); launcher "
                          f"{launcher.name!r} has none: use batch=False")
    if not batch and any(kwargs.get(k) is not None for k in ("time", "account", "queue")):
        raise ConfigError("time, account and queue are for the batch job of batch=True; with batch=False use "
                          "set_walltime() / set_run_arg()")
    if launcher.runs_on_this_host:
        try:
            interface_addresses(interfaces)  # the shards run here: the interfaces must exist here
        except ValueError as exc:
            raise ConfigError(f"interface: {exc}") from None
    Orchestrator._check_hosts(launcher, host_list)
    tls = _bool("tls", kwargs.get("tls", False))
    server = srv.find_server(kwargs.get("server"), tls=tls)
    rs = launcher.create_run_settings(exe=sys.executable, run_command=run_command)
    rs.cpus_per_task = db_cpus if db_cpus > 1 else None
    bs = None
    if batch:
        bs = launcher.create_batch_settings(time=kwargs.get("time"), account=kwargs.get("account"),
                                            queue=kwargs.get("queue"))
        if host_list:
            bs.set_hostlist(sorted(set(host_list)))
        if db_cpus > 1 and hasattr(bs, "set_cpus_per_task"):
            bs.set_cpus_per_task(db_cpus)
    launcher.check_settings(rs, bs)
    return Orchestrator(name, path, launcher, port=port, db_nodes=db_nodes, interfaces=interfaces, batch=batch,
                        hosts=host_list, run_settings=rs, batch_settings=bs, db_cpus=db_cpus, single_cmd=single_cmd,
                        server=server, persist=persist, ready_timeout=float(timeout), persistence=persistence,
                        stop_limit=None if stop_limit is None else float(stop_limit), max_restarts=max_restarts,
                        ml_devices=check_devices(kwargs.get("ml_devices", ["CPU"])),
                        tls=tls, replicas=replicas)
