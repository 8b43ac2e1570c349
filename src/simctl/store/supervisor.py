"""The supervisor of one store server: ``python -m simctl.store.supervisor``.

It runs on the node where a shard (or a colocated store) lives, as the
shard's process step or as a step's ``per_node`` command:

1. reads the password from ``$SSDB_PASSWORD`` (and removes it from the
   environment it passes on); it is never on a command line;
2. finds the IPv4 address of each ``--interface`` on this node (a missing
   interface is an error listing the ones that exist);
3. writes the server's configuration, password included, to a file of mode
   0600 in the data directory (``--dir``, made mode 0700; a private temporary
   directory for a colocated store), and starts the server with that file as
   its only argument, its output appended to its log (``shard-<i>.log`` in
   the data directory, or ``--log``);
4. waits until PING answers (with the password), then reports: a shard writes
   ``<dir>/shard-<i>.addr`` atomically (JSON: ``host``, ``port``, ``pid``,
   ``hostname``, ``launch``, ``index``); a colocated store creates the file
   named by ``$SIMCTL_READY_FILE`` (see :mod:`simctl.core.pernode`);
5. on SIGTERM, SIGINT or SIGHUP passes SIGTERM to the server, which shuts
   down saving its data to the data directory (``shutdown-on-sigterm save``),
   or without saving with ``--nosave``; exits with the server's exit status
   and removes its address file (and a colocated store's temporary directory).

A server that ends before it answers is an error on standard error quoting
the last lines of its log; a port already in use is named.

The inference workers (``--ml-device``) are started with the plugin arguments
it was given (``--plugin``, ``--plugin-path``, ``--disable-plugin``: the
experiment's plugins, see ``Plugins.worker_args``); it loads none itself. A
worker that dies is restarted; one that holds a request past the request's
timeout is killed as hung and restarted (:mod:`simctl.store.hung`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from . import contract
from .address import Address
from .server import render_conf, write_private

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


def ping(where: Address, password: str, timeout: float = 2.0) -> None:
    """AUTH then PING over a socket of its own (redis-py takes longer to import
    than a server takes to start). Returns once PONG came back; PermissionError
    if the password is refused; another OSError while the server is not ready."""
    family = socket.AF_UNIX if where.is_unix else socket.AF_INET6 if ":" in where.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(where.sockaddr())
        sock.sendall(_command("AUTH", password) + _command("PING"))
        data = b""
        while data.count(b"\r\n") < 2:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
    auth, pong = data.split(b"\r\n")[:2]
    if auth.startswith(b"-") and not auth.startswith(b"-LOADING"):
        raise PermissionError(auth[1:].decode("utf-8", "replace"))
    if pong != b"+PONG":
        raise ConnectionError(pong.decode("utf-8", "replace"))


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simctl.store.supervisor",
                                description="Start one store server, wait until it answers, report it, stop it.")
    p.add_argument("--server", required=True, help="the server binary (redis-server, valkey-server)")
    p.add_argument("--port", type=int, required=True, help="TCP port (0: none, with --unixsocket)")
    p.add_argument("--interface", action="append", default=[], help="interface to bind to (repeatable)")
    p.add_argument("--dir", help="data directory (a shard's); default: a private temporary one")
    p.add_argument("--index", type=int, default=0, help="shard number (names its files)")
    p.add_argument("--launch", default="", help="token of this launch, written to the address file")
    p.add_argument("--cluster", action="store_true", help="run as a Redis Cluster node")
    p.add_argument("--nosave", action="store_true", help="do not save the data when stopped")
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
    for flag, meta, what in WORKER_PLUGIN_ARGS:
        p.add_argument(flag, action="append", default=[], metavar=meta, help=f"passed to the inference workers: {what}")
    return p.parse_args(list(argv))


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
    """One server: configure, start, wait, report, forward the stop."""

    def __init__(self, args: argparse.Namespace, password: str) -> None:
        self.args, self.password = args, password
        self.proc: subprocess.Popen[bytes] | None = None
        #: inference workers by device
        self.workers: dict[str, _Worker] = {}
        self.where = ""
        self.stopping = False
        self.log_start = 0
        self.tmpdir: str | None = None
        if args.dir:
            self.dir = os.path.abspath(args.dir)
        else:
            self.dir = self.tmpdir = tempfile.mkdtemp(prefix=f"simctl-store-{os.getuid()}-")
        self.stem = f"shard-{args.index}"
        self.addr_file = os.path.join(self.dir, f"{self.stem}.addr")
        host = socket.gethostname().split(".")[0]
        self.log = (args.log.replace("{host}", host) if args.log
                    else os.path.join(self.dir, f"{self.stem}.log"))

    def directives(self, addresses: list[str]) -> list[tuple[str, str | list[str]]]:
        """The server's configuration: simctl's settings, then the user's ``--conf``."""
        a = self.args
        save = "nosave" if a.nosave else "save"
        conf: list[tuple[str, str | list[str]]] = [
            ("bind", addresses), ("port", str(a.port)), ("protected-mode", "yes"),
            ("requirepass", self.password), ("masterauth", self.password),
            ("dir", self.dir), ("dbfilename", f"{self.stem}.rdb"), ("logfile", self.log), ("daemonize", "no"),
            ("save", ""), ("appendonly", "no"), ("io-threads", "1"),
            ("shutdown-on-sigterm", save), ("shutdown-on-sigint", save),
        ]
        if a.unixsocket:
            conf += [("unixsocket", a.unixsocket), ("unixsocketperm", a.unixsocketperm)]
        if a.cluster:
            conf += [("cluster-enabled", "yes"), ("cluster-config-file", f"{self.stem}.nodes.conf")]
        user: dict[str, list[str]] = {}
        for item in a.conf:
            key, _, value = item.partition("=")
            user[key] = value.split() or [""]
        return [(k, v) for k, v in conf if k not in user] + list(user.items())

    def fail(self, message: str, log_lines: list[str] | None = None) -> int:
        """Say why the server did not come up (with its log's last lines); 1."""
        lines = tail(self.log, start=self.log_start) if log_lines is None else log_lines
        text = f"simctl store supervisor: {message}"
        if lines:
            text += f"; last lines of {self.log}:\n" + "\n".join(lines)
        print(text, file=sys.stderr, flush=True)
        return 1

    def on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for proc in [self.proc] + [w.proc for w in self.workers.values()]:
            if proc is not None and proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def run(self) -> int:
        a = self.args
        try:
            names = a.interface or (["lo"] if a.colocated and not a.unixsocket else [])
            addresses = interface_addresses(names) if names else []
        except ValueError as exc:
            return self.fail(str(exc), [])
        if a.colocated and "127.0.0.1" not in addresses:
            addresses.insert(0, "127.0.0.1")  # the application reaches its store on the loopback
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        if os.stat(self.dir).st_uid == os.getuid():
            os.chmod(self.dir, 0o700)  # the data (and the configuration's password) are the user's alone
        if a.unixsocket:
            os.makedirs(os.path.dirname(os.path.abspath(a.unixsocket)), mode=0o700, exist_ok=True)
        self._remove_addr_file()
        conf_path = os.path.join(self.dir, f"{self.stem}.conf")
        write_private(conf_path, render_conf(self.directives(addresses)))
        if a.pin:
            try:
                os.sched_setaffinity(0, _cpus(a.pin))
            except (OSError, ValueError) as exc:
                return self.fail(f"cannot pin the server to CPUs {a.pin} ({exc}); this process may use CPUs "
                                 f"{sorted(os.sched_getaffinity(0))}", [])
        env = contract.without_password(os.environ)
        log_fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.log_start = os.fstat(log_fd).st_size  # errors quote this run's lines only
        try:
            self.proc = subprocess.Popen([a.server, conf_path], stdin=subprocess.DEVNULL, stdout=log_fd,
                                         stderr=log_fd, env=env, close_fds=True)
        except OSError as exc:
            return self.fail(f"could not start {a.server}: {exc.strerror or exc}", [])
        finally:
            os.close(log_fd)
        if self.stopping:
            self.on_signal(signal.SIGTERM, None)
        if not self._wait_answering(addresses):
            return self._finish(failed=True)
        if a.preload and not self._preload():
            return self._finish(failed=True)
        for device in dict.fromkeys(a.ml_device):
            self._start_worker(device, "", first=True)
        self._wait_workers_connected()
        self._report(addresses)
        return self._finish(failed=False)

    def _wait_answering(self, addresses: list[str]) -> bool:
        """Wait until the server answers PING; False (having said why) if it ends first."""
        assert self.proc is not None
        where = Address(path=self.args.unixsocket) if self.args.unixsocket else Address(addresses[0], self.args.port)
        self.where = str(where)
        delay = 0.002
        while True:
            if self.proc.poll() is not None:
                lines = tail(self.log, start=self.log_start)
                reason = why_failed(lines, self.args.port)
                if not self.stopping:
                    self.fail(f"store server (port {self.args.port}, on {socket.gethostname()}) "
                              f"{os.path.basename(self.args.server)} exited with code {self.proc.returncode} "
                              "before it answered" + (f": {reason}" if reason else ""), lines)
                return False
            try:
                ping(where, self.password)
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
            preload_from_manifest(self.where, self.password, self.args.preload)
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
            if ready:
                open(ready, "w").close()
            return
        info = {"host": addresses[0] if addresses else "", "port": self.args.port, "pid": self.proc.pid,
                "supervisor": os.getpid(), "hostname": socket.gethostname(), "launch": self.args.launch,
                "index": self.args.index, "cluster": self.args.cluster}
        tmp = f"{self.addr_file}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(info, fh)
        os.replace(tmp, self.addr_file)

    def _finish(self, failed: bool) -> int:
        """Wait for the server to end; clean up; the exit status."""
        assert self.proc is not None
        rc = self._watch()
        self._stop_workers()
        self._remove_addr_file()
        if self.tmpdir is not None:
            import shutil

            shutil.rmtree(self.tmpdir, ignore_errors=True)
        if failed:
            return 0 if self.stopping else (rc or 1)
        if rc != 0 and not self.stopping:
            self.fail(f"the store server (port {self.args.port}) ended unexpectedly with code {rc}")
        return rc if rc >= 0 else 128 - rc

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
        env[PASSWORD_ENV] = self.password
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
                                    close_fds=True, pass_fds=() if tell is None else (tell,))
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

    def _watch(self) -> int:
        """Wait for the server to end, restarting inference workers that die
        (after a delay that doubles, up to MAX_RESTART_DELAY, while they keep
        dying within QUICK_DEATH seconds) and killing those that hold a
        request past its deadline (:mod:`simctl.store.hung`); the server's
        exit status."""
        assert self.proc is not None
        if self.workers and getattr(self, "hung_watch", None) is None:  # the watch of their taken lists
            from .hung import HungWatch  # redis-py: start-up cost, paid once the server answers

            self.hung_watch = HungWatch(self.where, self.password, self.workers, self.args.cluster).start()
        while True:
            try:
                return self.proc.wait(timeout=WATCH_INTERVAL if self.workers else None)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
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

    def _remove_addr_file(self) -> None:
        try:
            os.unlink(self.addr_file)
        except FileNotFoundError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one store server (see the module docstring); its exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    password = os.environ.pop(PASSWORD_ENV, "")
    if not password:
        print(f"simctl store supervisor: ${PASSWORD_ENV} is not set; the store's password comes through the "
              "environment (simctl sets it)", file=sys.stderr)
        return 2
    sup = Supervisor(args, password)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, sup.on_signal)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
