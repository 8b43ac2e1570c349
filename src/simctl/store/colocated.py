"""Colocated stores: a store server beside a model's application on each of
its nodes, reachable only from there.

``Model.colocate_db_tcp(...)`` / ``colocate_db_uds(...)`` keep the
:class:`ColocatedDB` that :func:`tcp` / :func:`uds` return (every option is
checked there); planning the model's step then calls :func:`apply`, which
sets on the step:

* ``per_node``: ``python -m simctl.store.supervisor --colocated ...``, run
  once per node before the application's ranks start there and stopped after
  the last one ends (:mod:`simctl.core.pernode`); it creates
  ``$SIMCTL_READY_FILE`` once the server answers;
* ``env["SSDB"]``: ``127.0.0.1:<port>`` or ``unix://<socket>``,
  ``env["SSDB_CLUSTER"] = "0"`` and ``env["SSDB_USER"]``, the members' user
  (:mod:`simctl.store.roles`);
* ``secret_env["SSDB_PASSWORD"]``: its password, generated for this launch
  (the supervisor makes up the other users' passwords itself: nobody else
  uses them);
* for a store named with ``db_identifier``, the same also suffixed with its
  name (``SSDB_<name>``, ``SSDB_PASSWORD_<name>``...), so a model given
  another store as well reaches each with its own credentials.

The model's status and exit code are its application's. The server keeps
its data in a private temporary directory on the node (removed when it stops;
nothing is saved) and writes its log to ``<model dir>/<model>-db.<host>.log``.
A TCP store listens on the loopback (and on ``ifname``'s address when it is
not ``lo``), behind the password; a Unix socket store is reachable only by
the model's user (``socket_permissions`` 0o700 or tighter).
"""

from __future__ import annotations

import difflib
import functools
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from ..core import checks
from ..core.errors import ConfigError, ConfigTypeError
from ..core.files import check_name
from ..core.logs import tail
from ..core.steps import ProcessStep
from . import contract, roles, server as srv
from .address import Address
from .orchestrator import check_port_free
from .ports import free_ports
from .protocol import check_devices
from .supervisor import interface_addresses

#: options the documents pass for inference (ML models in the store, a later issue); accepted and kept
ML_OPTIONS = ("threads_per_queue", "inter_op_threads", "intra_op_threads")
#: longest Unix socket path (sun_path holds 108 bytes with the NUL)
MAX_SOCKET_PATH = 107


@attrs.frozen
class ColocatedDB:
    """A checked colocated-store request (what ``Model.colocate_db_*`` keeps)."""

    #: "tcp" or "uds"
    transport: str
    port: int = 0
    ifnames: tuple[str, ...] = ()
    #: the socket path; None: a new one in the temporary directory per launch
    unix_socket: str | None = None
    socket_permissions: int = 0o700
    db_cpus: int = 1
    custom_pinning: tuple[int, ...] | None = None
    debug: bool = False
    #: server configuration directives from the keyword arguments (``maxclients=100000``)
    conf: tuple[tuple[str, str], ...] = ()
    #: inference options (``threads_per_queue``...), kept for the inference workers
    ml_options: tuple[tuple[str, Any], ...] = ()
    server: str = ""
    #: devices with an inference worker beside the store
    ml_devices: tuple[str, ...] = ("CPU",)
    #: the store's name (SmartSim's ``db_identifier``): the model also finds it as ``SSDB_<name>``...; None: unnamed
    name: str | None = None

    def apply(self, step: ProcessStep, plugins: Sequence[str] = ()) -> None:
        """Make ``step`` start this colocated store (see :func:`apply`)."""
        apply(step, self, plugins)



def _common(db_cpus: Any, custom_pinning: Any, debug: Any, kwargs: dict[str, Any], server: str | None,
            name: Any) -> dict[str, Any]:
    if name is not None:
        name = check_name("colocated store (db_identifier)", name)
        if contract.named(contract.ADDRESS, name) is None:
            raise ConfigError(f"db_identifier {name!r} cannot name a store's variables (SSDB_<name>...): it holds "
                              f"'=' or is one of {', '.join(contract.RESERVED)}; choose another name")
    db_cpus = checks.positive_int("db_cpus", db_cpus)
    pins: tuple[int, ...] | None = None
    if custom_pinning is not None:
        items = [custom_pinning] if isinstance(custom_pinning, (int, range)) else custom_pinning
        flat: list[int] = []
        for item in items if isinstance(items, (list, tuple, range)) else [None]:
            if isinstance(item, range):
                flat += list(item)
            elif isinstance(item, int) and not isinstance(item, bool) and item >= 0:
                flat.append(item)
            else:
                error = ConfigError if isinstance(item, int) and not isinstance(item, bool) else ConfigTypeError
                raise error(f"custom_pinning must be CPU numbers (ints >= 0) or ranges of them, such as "
                            f"[0, 2, range(4, 8)]; got {checks.show(custom_pinning)}")
        if not flat:
            raise ConfigError("custom_pinning is empty; give the CPUs to pin the store to, or None")
        pins = tuple(sorted(set(flat)))
    if not isinstance(debug, bool):
        raise ConfigTypeError(f"debug must be True or False; got {checks.show(debug)}")
    conf, ml = [], []
    devices = check_devices(kwargs.pop("ml_devices", ["CPU"]))
    for key, value in kwargs.items():
        if key in ML_OPTIONS:
            ml.append((key, checks.positive_int(key, value)))
        else:
            conf.append(srv.check_conf(f"colocated store option {key}=", key.replace("_", "-"), value))
    path = srv.find_server(server)
    known = known_directives(path) if conf else frozenset()  # a throw-away server, only when there is a directive
    unknown = [(k, v) for k, v in conf if known and k not in known and k not in FILE_ONLY]
    if unknown:
        key = unknown[0][0]
        hints = difflib.get_close_matches(key, sorted(known), 3)
        raise ConfigError(f"colocated store option {key.replace('-', '_')}=: {key!r} is not a directive of the "
                          f"store server {path}" + (f"; did you mean {', '.join(map(repr, hints))}?" if hints else "")
                          + f" (other keyword arguments: the inference options {', '.join(ML_OPTIONS)}, ml_devices)")
    return {"db_cpus": db_cpus, "custom_pinning": pins, "debug": debug, "conf": tuple(conf),
            "ml_options": tuple(ml), "server": path, "ml_devices": devices, "name": name}


#: directives of a configuration file that CONFIG GET does not list
FILE_ONLY = frozenset({"include", "rename-command", "user", "loadmodule", "replicaof", "slaveof", "sentinel"})


@functools.cache
def known_directives(server: str) -> frozenset[str]:
    """The configuration directives the server binary ``server`` knows (its
    ``CONFIG GET *``, aliases included), asked once per process of a
    throw-away server on a private Unix socket; empty if that fails (then
    nothing is refused here, and a bad directive fails the model with the
    server's own words in its reason)."""
    import redis  # redis-py: start-up cost, only for a colocated store's options

    with tempfile.TemporaryDirectory(prefix="simctl-conf-") as tmp:
        sock = os.path.join(tmp, "s.sock")
        if len(sock.encode()) > MAX_SOCKET_PATH:
            return frozenset()
        try:
            proc = subprocess.Popen([server, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
                                     "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            return frozenset()
        try:
            client = redis.Redis(unix_socket_path=sock, socket_timeout=5)
            deadline = time.monotonic() + 10  # a bounded wait: the server answers in milliseconds
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    return frozenset(k.decode() if isinstance(k, bytes) else str(k)
                                     for k in client.config_get("*"))
                except redis.RedisError:
                    time.sleep(0.005)
            return frozenset()
        finally:
            proc.kill()
            proc.wait()


def tcp(port: int | None = None, ifname: str | list[str] = "lo", db_cpus: int = 1, custom_pinning: Any = None,
        debug: bool = False, server: str | None = None, db_identifier: str | None = None,
        **kwargs: Any) -> ColocatedDB:
    """The options of ``Model.colocate_db_tcp``, checked. Other keyword
    arguments are server directives (``maxclients=100000``) or the inference
    options in :data:`ML_OPTIONS`. ``db_identifier`` names the store: the
    model also finds it as ``SSDB_<name>``, ``SSDB_PASSWORD_<name>``... (for a
    model given another store too; :mod:`simctl.store.contract`)."""
    if port is None:
        port = free_ports()  # free here, unlike a fixed default shared by every colocated store
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port must be an int between 1 and 65535; got {checks.show(port)}")
    names = checks.string_list("ifname", ifname, split=lambda s: s.split(","), items=(str,))
    if not names or not all(n.strip() for n in names):
        raise ConfigError(f"ifname must name a network interface ('lo') or a list of them; got {checks.show(ifname)}")
    return ColocatedDB("tcp", port=port, ifnames=tuple(n.strip() for n in names),
                       **_common(db_cpus, custom_pinning, debug, kwargs, server, db_identifier))


def uds(unix_socket: str | None = None, socket_permissions: int = 0o700, db_cpus: int = 1,
        custom_pinning: Any = None, debug: bool = False, server: str | None = None, db_identifier: str | None = None,
        **kwargs: Any) -> ColocatedDB:
    """The options of ``Model.colocate_db_uds``, checked. ``unix_socket``
    None gives every launch a new socket in the temporary directory.
    ``socket_permissions`` must give nothing to group and others and let the
    owner write (0o700, 0o600...)."""
    if unix_socket is not None:
        if not isinstance(unix_socket, (str, os.PathLike)) or not os.path.isabs(os.fspath(unix_socket)):
            raise ConfigError(f"unix_socket must be an absolute path (or None for a new one per launch); got "
                              f"{checks.show(unix_socket)}")
        unix_socket = os.fspath(unix_socket)
        if len(unix_socket.encode()) > MAX_SOCKET_PATH:
            raise ConfigError(f"unix_socket path is {len(unix_socket.encode())} bytes long; a Unix socket path "
                              f"may be at most {MAX_SOCKET_PATH}: {unix_socket!r}")
    if (isinstance(socket_permissions, bool) or not isinstance(socket_permissions, int)
            or socket_permissions & ~0o700 or not socket_permissions & 0o200):
        shown = oct(socket_permissions) if isinstance(socket_permissions, int) else checks.show(socket_permissions)
        raise ConfigError(f"socket_permissions must let only the model's user reach the store: 0o700 or tighter "
                          f"(no bits for group or others, and the owner's write bit 0o200, which connecting "
                          f"needs); got {shown}")
    return ColocatedDB("uds", unix_socket=unix_socket, socket_permissions=socket_permissions,
                       **_common(db_cpus, custom_pinning, debug, kwargs, server, db_identifier))


def _socket_path() -> str:
    name = f"simctl-{os.getuid()}-{uuid.uuid4().hex[:16]}.sock"
    path = os.path.join(tempfile.gettempdir(), name)
    return path if len(path.encode()) <= MAX_SOCKET_PATH else os.path.join("/tmp", name)


def apply(step: ProcessStep, db: ColocatedDB, plugins: Sequence[str] = ()) -> None:
    """Make ``step`` (a model's) start its colocated store: sets ``per_node``,
    ``env["SSDB"]``, ``env["SSDB_CLUSTER"]``, ``env["SSDB_USER"]`` and
    ``secret_env["SSDB_PASSWORD"]``.
    A password (and, by default, a socket path) is generated per call.
    ``plugins``: the experiment's plugins for the inference workers
    (``PlanContext.worker_plugins``)."""
    argv = [sys.executable, "-m", "simctl.store.supervisor", "--colocated", "--server", db.server, "--nosave",
            "--log", os.path.join(step.cwd, f"{step.name}-db.{{host}}.log")]
    if db.transport == "uds":
        path = db.unix_socket or _socket_path()
        argv += ["--port", "0", "--unixsocket", path, "--unixsocketperm", format(db.socket_permissions, "o")]
        address = str(Address(path=path))
    else:
        argv += ["--port", str(db.port)]
        for name in db.ifnames:
            argv += ["--interface", name]
        address = str(Address("127.0.0.1", db.port))
    if db.custom_pinning:
        argv += ["--pin", ",".join(map(str, db.custom_pinning))]
    conf = list(db.conf)
    if db.debug:
        conf.insert(0, ("loglevel", "verbose"))
    for key, value in conf:
        argv += ["--conf", f"{key}={value}"]
    for device in db.ml_devices:
        argv += ["--ml-device", device]
    if db.ml_devices:
        argv += plugins
    step.per_node = argv
    env, secret_env = contract.store_env([address], False, secrets.token_urlsafe(32), user=roles.MEMBER,
                                         name=db.name)
    step.env.update(env)
    step.secret_env.update(secret_env)


def check_here(models: Sequence[tuple[str, ColocatedDB]]) -> None:
    """The colocated stores of models about to start on this host (a launcher
    that runs processes here), checked as ``create_database`` checks its
    shards: each TCP store's interfaces exist here and its port is free on
    them, no two of them take one port, no two take one Unix socket path."""
    ports: dict[int, str] = {}
    sockets: dict[str, str] = {}
    for who, db in models:
        if db.transport == "uds":
            if db.unix_socket is not None:
                if db.unix_socket in sockets:
                    raise ConfigError(f"{sockets[db.unix_socket]} and {who} both colocate a store on the Unix socket "
                                      f"{db.unix_socket} on this host; give each its own unix_socket= (or leave it "
                                      "out: a new one per launch)")
                sockets[db.unix_socket] = who
            continue
        try:
            addresses = interface_addresses(db.ifnames)
        except ValueError as exc:
            raise ConfigError(f"{who}: colocate_db_tcp(ifname={list(db.ifnames)!r}): {exc}") from None
        if db.port in ports:
            raise ConfigError(f"{ports[db.port]} and {who} both colocate a store on port {db.port} on this host, where "
                              "only one can listen; give each its own port= (or leave port out: a free one each)")
        ports[db.port] = who
        for address in dict.fromkeys(["127.0.0.1", *addresses]):
            check_port_free(address, db.port, f"the store colocated with {who}")


#: how the supervisor's own messages begin (see :mod:`.supervisor`)
SUPERVISOR_SAYS = "simctl store supervisor: "


def failure_line(err_path: str) -> str | None:
    """Why a colocated store failed, from the model's error output: the
    supervisor's last error line (warnings left out), with the server's own
    line when it quoted one (``>>> 'maxclient 100'`` and what follows)."""
    lines = tail(err_path, 60)
    said = [i for i, line in enumerate(lines) if line.startswith(SUPERVISOR_SAYS) and "runs as root" not in line]
    if not said:
        return None
    i = said[-1]
    text = lines[i][len(SUPERVISOR_SAYS):].rstrip()
    quoted = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(">>>")), None)
    if quoted is not None:
        text = text.split("; last lines of")[0] + ": " + " ".join(x.strip() for x in lines[quoted:quoted + 2])
    return text
