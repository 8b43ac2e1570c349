"""simctl's server module: the run_model round's kind-checking scripts as server commands.

A store's server may load a small module (``module/simctl_module.c``, built here with
gcc on first use) that does in C what three Lua scripts of the round do:

``SIMCTL.PUT key value stem``
    :data:`simctl.store.keyspace.PUT` (``EVALSHA <sha> 1 key value stem``).
``SIMCTL.SUBMIT numkeys key [key ...] arg [arg ...]``
    :data:`simctl.store.protocol.SUBMIT`, called with the same keys and arguments.
``SIMCTL.FINISH numkeys key [key ...] arg [arg ...]``
    :data:`simctl.store.fastround.FINISH` likewise (its optional last argument
    too: ``LREM`` of that request from the taken list instead of its ``DEL``).

A caller swaps ``EVALSHA <sha>`` for the command's name and nothing else
changes: the replies, the refusals (``SIMCTLKIND <i> <kind>``, which
:func:`simctl.store.keyspace.kind_error` reads) and the pushed request's bytes
are the scripts'. Where they differ, the module refuses before it writes
anything while a script stops half way: a reply or taken list that holds
another type than a list (``WRONGTYPE``, RPUSH's text: the script would have
SET the outputs first), and a malformed call (too few arguments, a limit or an
input count that is not an integer, an input count larger than the keys
allow: ``ERR`` naming what the command takes). The number-of-keys errors are
EVALSHA's. A script's runtime error names its SHA; the module's do not.

Every write is replicated as the plain command (``SET``, ``RPUSH``,
``PEXPIREAT``, ``DEL``, ``LREM``), never as the module's command: an AOF
restarted, or a replica, without the module holds the same data. The writes
fire the keyspace notifications their plain commands fire (``set``,
``rpush``, ``expire``, ``del``, ``lrem``), and a push wakes ``BLPOP`` and
``BLMOVE`` waiters. The module reads strings without changing them (a short
one, which the server may keep in a compact encoding that the module API
would rewrite to read it, is read with ``GET``).

Values: the module path is for values of at most
:data:`simctl.store.keyspace.MOVE_FROM` bytes; a larger value keeps the
temporary key and :data:`~simctl.store.keyspace.MOVE_IN` (valkey 9.1 copies a
value a module stores, about 50 us per MiB, where ``SET`` takes the argument
as it is).

Loading: a server that cannot load a module exits at start, so
:func:`module_for` builds the module once (into the user's cache directory,
named by the hash of its source) and probes each server binary once (a
throw-away server on a unix socket in a temporary directory), keeping both
answers on disk. Anything that fails (no gcc, a build error, a refusal) is
said once as a :class:`~simctl.core.errors.SimctlWarning` and answered with
None: the store then runs without the module and clients use the scripts.
``SIMCTL_SERVER_MODULE=0`` turns the module off.

Access: the commands carry no ACL category of their own on redis 7.0; the
member and worker rules of :mod:`simctl.store.roles` (``+@all`` less
``@admin`` and ``@dangerous``) let them run. ``MODULE`` stays refused to all:
the module is loaded at start (``--loadmodule``) or not at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from ..core.errors import SimctlWarning

#: the module's commands (each a drop-in for its script's EVALSHA)
MODULE_COMMANDS = ("SIMCTL.PUT", "SIMCTL.SUBMIT", "SIMCTL.FINISH")
#: the environment variable that turns the module off (``0``, ``off``, ``no``, ``false``; ``1``, ``on``,
#: ``yes``, ``true`` or unset: on)
ENV = "SIMCTL_SERVER_MODULE"
_OFF, _ON = ("0", "off", "no", "false"), ("", "1", "on", "yes", "true")


def wanted() -> bool:
    """Whether :data:`ENV` leaves the module on; a value that is neither is said (once) and leaves it on."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in _OFF:
        return False
    if value not in _ON:
        _say(f"{ENV}={os.environ[ENV]!r} is not one of {', '.join(_OFF)} (off) or {', '.join(_ON[1:])} (on); "
             "the module is used", used=True)
    return True
#: the module's C source (package data)
SOURCE = Path(__file__).resolve().parent / "module" / "simctl_module.c"
#: how it is built: gcc alone, no libc headers or libraries (the server process has memcmp and memcpy)
CFLAGS = ("-O2", "-Wall", "-fPIC", "-shared", "-nostdlib")
#: seconds a probe waits for its server (a binary that hangs is refused, not waited on for ever)
PROBE_WAIT = 30.0

_warned: set[str] = set()


def _say(why: str, used: bool = False) -> None:
    """Warn ``why`` once per process (``used``: about a module that is used nonetheless)."""
    if why not in _warned:
        _warned.add(why)
        warnings.warn(f"simctl server module: {why}" if used else
                      f"simctl server module not used: {why}; the store runs the Lua scripts instead "
                      f"(set {ENV}=0 to silence this)", SimctlWarning, stacklevel=3)


def cache_dir() -> Path:
    """Where built modules and probe answers are kept: ``$XDG_CACHE_HOME/simctl`` (``~/.cache/simctl``)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "simctl"


def source_hash() -> str:
    """The hash that names a build: of the C source and the flags."""
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(" ".join(CFLAGS).encode())
    return h.hexdigest()[:16]


def build() -> Path:
    """The built module (``module-<hash>.so`` in :func:`cache_dir`), built now
    when missing: to a temporary name, then renamed (two builders at once each
    rename a whole file) by ``$CC`` (default ``gcc``). OSError saying why when it cannot be built."""
    out = cache_dir() / f"module-{source_hash()}.so"
    if out.is_file():
        return out
    gcc = shutil.which(os.environ.get("CC", "gcc"))
    if gcc is None:
        raise OSError("no C compiler (gcc) on PATH: apt-get install --no-install-recommends gcc")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        done = subprocess.run([gcc, *CFLAGS, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise OSError(f"{gcc} failed on {SOURCE} (exit {done.returncode}): {done.stderr.strip()[-600:]}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _binary_id(server: str) -> str:
    """The identity of a server binary: its real path, mtime and size (a binary replaced is probed again)."""
    path = os.path.realpath(shutil.which(server) or server)
    st = os.stat(path)
    return f"{path}\0{st.st_mtime_ns}\0{st.st_size}"


def probe(server: str, so: Path) -> str | None:
    """Start ``server`` with the module ``so`` on a unix socket in a temporary
    directory and ask it for the module's commands: None when it has them all,
    else why not (its exit and last output, or what it answered)."""
    with tempfile.TemporaryDirectory(prefix="simctl-probe-") as tmp:
        sock_path = os.path.join(tmp, "s.sock")
        log = os.path.join(tmp, "log")
        argv = [server, "--port", "0", "--unixsocket", sock_path, "--unixsocketperm", "700", "--dir", tmp,
                "--save", "", "--appendonly", "no", "--loadmodule", str(so)]
        with open(log, "wb") as out:
            try:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            except OSError as exc:
                return f"{server} could not be started: {exc}"
        try:
            return _ask(proc, sock_path, log)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _ask(proc: subprocess.Popen[bytes], sock_path: str, log: str) -> str | None:
    """The probe's question to the started server ``proc`` (see :func:`probe`)."""
    import redis  # redis-py: start-up cost, for a probe only (once per server binary; the supervisor has none)

    deadline = time.monotonic() + PROBE_WAIT
    while True:
        code = proc.poll()
        if code is not None:
            tail = Path(log).read_text(errors="replace").strip().splitlines()[-3:]
            return f"the server exited ({code}) when loading it: {' | '.join(tail)[-400:] or '(no output)'}"
        if os.path.exists(sock_path):
            conn = redis.Redis(unix_socket_path=sock_path, socket_timeout=max(deadline - time.monotonic(), 0.1))
            try:
                missing = [c for c in MODULE_COMMANDS if not _holds(conn, c)]
                return f"the server lacks {', '.join(missing)} with it loaded" if missing else None
            except redis.ConnectionError:
                pass  # (redis 7.0 listens before it loads modules: a failed load resets the connection)
            finally:
                conn.close()
        if time.monotonic() > deadline:
            return f"the server gave no answer within {PROBE_WAIT:g} s"
        time.sleep(0.005)


def module_for(server: str) -> str | None:
    """Path of a built module .so that the server binary ``server`` (a path or a
    name on PATH) loads, or None: turned off (``SIMCTL_SERVER_MODULE=0``), no
    gcc, the build failed, or the server refused it (each said once with a
    SimctlWarning; never raises). The build is kept by its source's hash and
    the probe's answer per (binary's real path, mtime, size) next to it, so
    this costs a file look-up after the first time."""
    if not wanted():
        return None
    try:
        so = build()
    except OSError as exc:
        _say(f"it could not be built: {exc}")
        return None
    try:
        ident = _binary_id(server)
    except OSError as exc:
        _say(f"server {server!r} not found: {exc}")
        return None
    answer = so.with_name(f"{so.stem}.{hashlib.sha256(ident.encode()).hexdigest()[:16]}.probe")
    try:
        why = answer.read_text().partition("\n")[2] or None
    except OSError:
        why = probe(server, so)
        try:
            tmp = answer.with_name(f"{answer.name}.{os.getpid()}.tmp")
            tmp.write_text(f"{ident}\n{why or ''}")
            os.replace(tmp, answer)
        except OSError:
            pass  # (a read-only cache: probed again next time)
    if why:
        _say(f"{server} does not load {so}: {why}")
        return None
    return str(so)


def has_module(conn: Any) -> bool:
    """Whether the server behind ``conn`` (a redis.Redis) has the module's
    commands (``COMMAND INFO simctl.put``); False when it cannot tell."""
    try:
        return _holds(conn, MODULE_COMMANDS[0])
    except Exception:  # noqa: BLE001 - any failure to tell: the scripts, which every server has
        return False


def _holds(conn: Any, command: str) -> bool:
    """Whether the server behind ``conn`` has ``command`` (``COMMAND INFO``; redis-py's errors raised)."""
    reply = conn.execute_command("COMMAND", "INFO", command)
    if isinstance(reply, dict):
        return any(v for v in reply.values())
    return bool(reply) and reply[0] is not None
