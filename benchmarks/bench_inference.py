"""Inference benchmarks (issue 10, "Speed"): run_model through the store's
inference worker against the same model run in-process with the same runtime.

    python benchmarks/bench_inference.py [--only CASES] [--quick] [--rounds N]
                                         [--seconds S] [--json PATH]

Every case starts its own store the way a user does
(``simctl.Experiment(..., launcher="local").create_database(port=...)``,
``exp.start(db)``, ``db.client()``): one redis-server on loopback TCP with a
password, its supervisor, and one CPU inference worker. The models are MLPs
made with torch (``torch.onnx.export`` / ``torch.jit.script`` + ``torch.jit.save``)
in a child process before anything is timed, so the measuring process holds
no ML runtime (like a simulation that only has the client).

Cases (exit status 1 if a target is missed or a case fails):

  latency     one round = ``put_tensor`` of the input, ``run_model``,
              ``get_tensor`` of the output, for a small ONNX MLP and a small
              TorchScript MLP (32 -> 64 -> 64 -> 8, ReLU, batch 1, float32),
              against, in the same run: the relay (:class:`Relay`: the same
              hand-offs over plain sockets with a minimal worker process
              running the same model in-process, on the same server) and the
              model run in-process alone with the same runtime in a child
              process (``InferenceSession.run`` with the backend's session
              options; ``torch.jit.load``'ed module under
              ``torch.inference_mode``). --rounds repetitions (default 3) of
              1,000 calls of each, each repetition in another order; p50 and
              p99 per repetition, shown min-max. Also shown: a round of
              ``put_tensor`` + ``get_tensor`` alone. Each repetition runs in
              two placements (:data:`PLACEMENTS`): free (wherever the
              scheduler puts the processes) and on one CPU (the main threads
              of the client, the server and the worker pinned to one CPU:
              stable, where the free relay swings between about 120 and 300
              us a round with the CPUs it is woken on). Targets, per
              placement: p50 within 1.1x the relay's (median of the
              repetitions' ratios), and at most 1 ms above in-process.
  throughput  16 client processes (spawned, each with its own Client and its
              own keys) run rounds (as above, batch 1) for a fixed time on an
              ONNX MLP whose one call costs about 2.5 ms in-process here with
              onnxruntime's defaults (4096 -> 4096 -> 4096 -> 64, 33.8 M
              parameters; 5.5-6.5 ms for 16 rows), stored twice: unbatched
              (batch_size=0) and batched (batch_size=16, min_batch_size=16,
              min_batch_timeout=8 ms: one request per client fills a batch). A third window has the same processes do
              put_tensor + get_tensor only: the ceiling that the clients and the
              server leave. The windows alternate, --rounds times --seconds
              each; the CPU each process used is read with psutil. Target:
              batched rounds/s at least 3x unbatched.
  memory      RSS (psutil) of the worker process (pid from CLIENT LIST, see
              ``protocol.worker_pids``) at rest and after 10 models (256 ->
              512 -> 512 -> 16, different weights) are stored and each run
              once, for ONNX and for TORCH (a store each), against a bare
              ``python -c`` that imports the same runtime and loads and runs
              the same 10 models. No target (the issue asks for the figure).

The machine this was written on has 2 cores: the measuring client(s), the
redis-server, the supervisor and the worker share them, and the figures say
as much about that as about the code: in the throughput case the clients,
the server and the worker's runtime (onnxruntime uses 2 threads here) want
more than the 2 cores. --quick: a smoke run (few calls, 1 s windows).
--skip-peer / --peer-only / --peer-repeat are accepted and unused (there is
no peer for this).
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, bench_arg_parser, fmt_ratio, run_cases  # noqa: E402

CASES = ["latency", "throughput", "memory"]
SMALL = (32, 64, 64, 8)
BIG = (4096, 4096, 4096, 64)
MEM = (256, 512, 512, 16)
N_MEM_MODELS = 10
N_CLIENTS = 16
#: one request per client fills a batch; wait at most about 3 unbatched calls for it
BATCH = dict(batch_size=16, min_batch_size=16, min_batch_timeout=8)
TARGET_ABOVE = 0.001  # seconds of p50 above in-process
TARGET_RELAY = 1.1  # p50 of a round over the relay's
TARGET_BATCHING = 3.0


def target(rep: Report, args: Any, name: str, ok: bool, text: str, **data: Any) -> None:
    """A line judged against its target (OK / MISS), or only shown in a --quick run,
    whose few calls say nothing either way."""
    if args.quick:
        rep.info(name, f"{text} (--quick: not judged)", **data)
    else:
        rep._add(name, "OK" if ok else "MISS", f"{name}: {text} {'OK' if ok else 'MISS'}", **data)


# --------------------------------------------------------------------------- models


def _mlp(dims: Sequence[int], seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    layers: list[Any] = []
    for a, b in zip(dims, dims[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).eval()


def _build(out_dir: str, specs: dict[str, tuple[Sequence[int], int, str]]) -> None:
    """Write each model of ``specs`` (file name -> (dims, seed, "ONNX" | "TORCH")) into ``out_dir``."""
    import warnings

    import torch

    warnings.simplefilter("ignore")
    for name, (dims, seed, runtime) in specs.items():
        net, buf = _mlp(dims, seed), io.BytesIO()
        if runtime == "ONNX":
            torch.onnx.export(net, (torch.zeros(1, dims[0]),), buf, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
        else:
            torch.jit.save(torch.jit.script(net), buf)
        Path(out_dir, name).write_bytes(buf.getvalue())


def build_models(out_dir: str, specs: dict[str, tuple[Sequence[int], int, str]]) -> dict[str, bytes]:
    """The models of ``specs``, made in a child process (torch stays out of this one)."""
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_build, args=(out_dir, specs))
    proc.start()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"building the models failed (exit {proc.exitcode})")
    return {name: Path(out_dir, name).read_bytes() for name in specs}


def _input(rows: int, cols: int, seed: int = 0) -> Any:
    import numpy as np

    return np.random.default_rng(seed).random((rows, cols), dtype=np.float32)


# --------------------------------------------------------------------------- store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def store(root: str) -> Iterator[tuple[Any, Any]]:
    """A one-shard store with a CPU inference worker, started as a user does; (db, client)."""
    import simctl

    exp = simctl.Experiment("bench-inference", exp_path=tempfile.mkdtemp(dir=root), launcher="local")
    db = exp.create_database(port=_free_port())
    exp.start(db)
    client = None
    try:
        client = db.client()
        worker_pid(db)  # a run sent before the worker connects would wait for it
        yield db, client
    finally:
        if client is not None:
            client.close()
        exp.stop(db)


def worker_pid(db: Any, timeout: float = 120) -> int:
    """The pid of the store's CPU inference worker (from CLIENT LIST), once it is connected."""
    import redis

    from simctl.store import protocol

    host, _, port = db.get_address()[0].rpartition(":")
    r = redis.Redis(host=host, port=int(port), username=db.username, password=db.password)
    deadline = time.monotonic() + timeout
    try:
        while not (pids := protocol.worker_pids(r.client_list(), "CPU")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no inference worker connected within {timeout:g} s")
            time.sleep(0.05)
    finally:
        r.close()
    if len(pids) != 1:
        raise RuntimeError(f"expected one CPU worker, CLIENT LIST shows {pids}")
    return pids[0]


# --------------------------------------------------------------------------- the relay floor


class Resp:
    """A minimal RESP2 client on a plain socket: the floor's side of every exchange."""

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.call([(b"AUTH", username.encode(), password.encode())])

    @staticmethod
    def pack(cmds: Sequence[Sequence[bytes]]) -> bytes:
        out = []
        for cmd in cmds:
            out.append(b"*%d\r\n" % len(cmd))
            for a in cmd:
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def call(self, cmds: Sequence[Sequence[bytes]]) -> list[Any]:
        """Send ``cmds`` in one write; their replies."""
        self.sock.sendall(self.pack(cmds))
        return [self.read() for _ in cmds]

    def _recv(self, n: int) -> None:
        data = self.sock.recv(n)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._recv(1 << 16)
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def read(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        n = int(rest)
        if kind == b"*":
            return None if n < 0 else [self.read() for _ in range(n)]
        if n < 0:
            return None
        while len(self.buf) < n + 2:
            self._recv(max(1 << 16, n + 2 - len(self.buf)))
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data


@contextlib.contextmanager
def _closing(relay: Relay) -> Iterator[Relay]:
    try:
        yield relay
    finally:
        relay.close()


def _runner(runtime: str, model: bytes) -> Callable[[Any], Any]:
    """``model`` loaded with its runtime as the backend does: a function of the input array."""
    if runtime == "ONNX":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    import warnings

    import torch

    warnings.simplefilter("ignore")
    module = torch.jit.load(io.BytesIO(model), map_location="cpu")
    module.eval()

    def run(x: Any) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()
    return run


def _relay_worker(address: tuple[str, int, str, str], runtime: str, model: bytes, cols: int) -> None:
    """The relay's minimal worker: BLPOP a request (``<input key> <output key>
    <reply key>``), GET the input, run the model in-process, then SET the
    output, RPUSH the reply and block for the next request, in one write."""
    import numpy as np

    run = _runner(runtime, model)
    r = Resp(*address)
    got = r.call([(b"BLPOP", b"relay.q", b"0")])[0]
    while got[1] != b"stop":
        xk, yk, rk = got[1].split(b" ")
        x = np.frombuffer(r.call([(b"GET", xk)])[0], np.float32).reshape(-1, cols)
        y = np.ascontiguousarray(run(x)).tobytes()
        got = r.call([(b"SET", yk, y), (b"RPUSH", rk, b"ok"), (b"BLPOP", b"relay.q", b"0")])[2]


class Relay:
    """The floor of a run_model round: the same hand-offs over plain sockets
    with a minimal worker process (:func:`_relay_worker`) on the same server;
    a round is SET of the input, RPUSH of the request with BLPOP of the reply
    in one write, GET of the output: three exchanges of the client, three of
    the worker, as simctl's."""

    def __init__(self, db: Any, runtime: str, model: bytes, cols: int) -> None:
        host, _, port = db.get_address()[0].rpartition(":")
        address = (host, int(port), db.username, db.password)
        ctx = multiprocessing.get_context("spawn")
        self.proc = ctx.Process(target=_relay_worker, args=(address, runtime, model, cols))
        self.proc.start()
        self.r = Resp(*address)

    def round(self, x: Any) -> Any:
        import numpy as np

        self.r.call([(b"SET", b"relay.x", x.tobytes())])
        self.r.call([(b"RPUSH", b"relay.q", b"relay.x relay.y relay.r"), (b"BLPOP", b"relay.r", b"0")])
        return np.frombuffer(self.r.call([(b"GET", b"relay.y")])[0], np.float32)

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.r.call([(b"RPUSH", b"relay.q", b"stop")])
        self.r.sock.close()
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# --------------------------------------------------------------------------- latency


def _times(op: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        op()
        out.append(time.perf_counter() - t0)
    return out


def _pct(samples: Sequence[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def _in_process(conn: Any, runtime: str, model: bytes, dims: Sequence[int], rows: int = 1) -> None:
    """The baseline: load ``model`` with its runtime as the backend does, send
    its output for ``rows`` rows, then answer ``n`` with n timed calls (None ends)."""
    x = _input(rows, dims[0])
    run = _runner(runtime, model)

    def once() -> Any:
        return run(x)
    conn.send(once())
    while (n := conn.recv()) is not None:
        conn.send(_times(once, n))


def in_process(runtime: str, model: bytes, dims: Sequence[int], rows: int = 1) -> tuple[Any, Any]:
    """A child process running ``model`` in-process (see :func:`_in_process`):
    (its pipe, the process). Its first message is its output."""
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=_in_process, args=(theirs, runtime, model, dims, rows))
    child.start()
    return mine, child


def end(conn: Any, child: Any) -> None:
    """Tell an in-process child to end, and make sure it does."""
    with contextlib.suppress(OSError):
        conn.send(None)
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        child.join()


def case_latency(rep: Report, args: Any, run_simctl: bool) -> None:
    if not run_simctl:
        rep.skip("latency", "simctl not importable")
        return
    import numpy as np

    reps, n = (2, 200) if args.quick else (args.rounds or 3, 1000)
    root = tempfile.mkdtemp(prefix="simctl-bench-inference-")
    try:
        models = build_models(root, {"small.onnx": (SMALL, 0, "ONNX"), "small.pt": (SMALL, 0, "TORCH")})
        x = _input(1, SMALL[0])  # the in-process side makes the same
        for runtime, file in (("ONNX", "small.onnx"), ("TORCH", "small.pt")):
            mine, child = in_process(runtime, models[file], SMALL)
            try:
                expected = mine.recv()
                with store(root) as (db, client), _closing(Relay(db, runtime, models[file], SMALL[0])) as relay:
                    client.set_model("mlp", models[file], runtime)

                    def round_trip() -> Any:
                        client.put_tensor("x", x)
                        client.run_model("mlp", "x", "y")
                        return client.get_tensor("y")

                    def put_get() -> Any:
                        client.put_tensor("x", x)
                        return client.get_tensor("y")

                    def relay_round(relay: Relay = relay) -> Any:
                        return relay.round(x)

                    def in_proc(k: int, conn: Any = mine) -> list[float]:
                        conn.send(k)
                        return conn.recv()  # type: ignore[no-any-return]

                    got = round_trip()
                    rep.check(f"{runtime} output", bool(np.allclose(got, expected, rtol=1e-4, atol=1e-5)),
                              "the worker's output equals the in-process run's")
                    rep.check(f"{runtime} relay output", bool(np.allclose(relay_round().reshape(got.shape),
                                                                          expected, rtol=1e-4, atol=1e-5)),
                              "the relay's output equals the in-process run's")
                    _times(round_trip, n // 4)  # warm up every side
                    _times(relay_round, n // 4)
                    in_proc(n // 4)
                    sides: dict[str, Callable[[], list[float]]] = {
                        "store": lambda: _times(round_trip, n), "relay": lambda: _times(relay_round, n),
                        "in-process": lambda: in_proc(n), "put+get": lambda: _times(put_get, n)}
                    order = list(sides)
                    pids = [0, _server_pid(db), worker_pid(db), relay.proc.pid]  # (0: this thread)
                    samples = {p: {k: [] for k in sides} for p in PLACEMENTS}
                    for r in range(reps):  # each repetition in another order, in each placement
                        for placement in PLACEMENTS:
                            with _placed(placement, pids):
                                for k in order[r % len(order):] + order[:r % len(order)]:
                                    samples[placement][k].append(sides[k]())
            finally:
                end(mine, child)
            for placement in PLACEMENTS:
                _latency_report(rep, args, f"{runtime} ({placement})", samples[placement])
    except Exception as exc:  # noqa: BLE001
        rep.exception("latency", exc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


#: where the processes of a round run: wherever the scheduler puts them, and the main threads of the client,
#: the server and the worker (the relay's worker) on one CPU: there a hand-off costs no wake-up of another
#: CPU, whose cost on this virtual machine swings the relay between about 120 and 300 us a round
PLACEMENTS = ("free", "one CPU")


def _server_pid(db: Any) -> int:
    """The pid of the server listening on the store's port."""
    import psutil

    port = int(db.get_address()[0].rpartition(":")[2])
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return int(c.pid)
    raise RuntimeError(f"no process listens on port {port}")


@contextlib.contextmanager
def _placed(placement: str, pids: Sequence[int]) -> Iterator[None]:
    """``placement`` for the main threads of ``pids`` (0: the calling thread) while the block runs."""
    if placement == "free":
        yield
        return
    cpu = max(os.sched_getaffinity(0))
    before = {pid: os.sched_getaffinity(pid) for pid in pids}
    for pid in pids:
        os.sched_setaffinity(pid, {cpu})
    try:
        yield
    finally:
        for pid, cpus in before.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, cpus)


def _latency_report(rep: Report, args: Any, runtime: str, samples: dict[str, list[list[float]]]) -> None:
    """The latency lines of ``runtime``: p50s per repetition, ratios to the relay (the target) and in-process."""
    def us(s: float) -> str:
        return f"{s * 1e6:.0f} us"

    def span(values: Sequence[float], f: Callable[[float], str]) -> str:
        return f"{f(min(values))}-{f(max(values))}"

    p50 = {k: [_pct(v, 0.5) for v in runs] for k, runs in samples.items()}
    p99 = {k: [_pct(v, 0.99) for v in runs] for k, runs in samples.items()}
    to_relay = [s / r for s, r in zip(p50["store"], p50["relay"])]
    ratio = statistics.median(to_relay)
    reps = len(to_relay)
    target(rep, args, f"{runtime} run_model round, p50, to the relay", ratio <= TARGET_RELAY,
           f"store {span(p50['store'], us)} | relay {span(p50['relay'], us)} | store/relay {fmt_ratio(ratio)} "
           f"(median of {reps} repetitions; {span(to_relay, fmt_ratio)}; target <= {TARGET_RELAY:g}x)",
           store_p50=p50["store"], relay_p50=p50["relay"], inproc_p50=p50["in-process"], ratio=to_relay)
    above = [s - b for s, b in zip(p50["store"], p50["in-process"])]
    target(rep, args, f"{runtime} run_model round, p50, above in-process", max(above) <= TARGET_ABOVE,
           f"in-process {span(p50['in-process'], us)} | store +{span(above, us)} (target <= +{us(TARGET_ABOVE)}); "
           f"relay/in-process {span([r / b for r, b in zip(p50['relay'], p50['in-process'])], fmt_ratio)}")
    rep.info(f"{runtime} run_model round, p99",
             f"store {span(p99['store'], us)} | relay {span(p99['relay'], us)} | in-process "
             f"{span(p99['in-process'], us)} ({reps} repetitions x {len(samples['store'][0])} calls)")
    rep.info(f"{runtime} put_tensor + get_tensor alone",
             f"p50 {span(p50['put+get'], us)}, p99 {span(p99['put+get'], us)} (so run_model itself: p50 about "
             f"{span([s - p for s, p in zip(p50['store'], p50['put+get'])], us)})")


# --------------------------------------------------------------------------- throughput


def _client(address: str, username: str, password: str, index: int, conn: Any) -> None:
    """One client process: on (model, t0, t1) run rounds from t0 until t1 and
    answer how many finished by t1 (model "": put_tensor + get_tensor only); None ends."""
    from simctl.store import Client

    client = Client(address=address, username=username, password=password)
    x = _input(1, BIG[0], seed=index)
    xk, yk = f"c{index}.x", f"c{index}.y"

    def round_trip(model: str) -> None:
        client.put_tensor(xk, x)
        if model:
            client.run_model(model, xk, yk)
        client.get_tensor(yk)

    for model in MODES[:2]:
        round_trip(model)
    conn.send("ready")
    while (msg := conn.recv()) is not None:
        model, t0, t1 = msg
        while time.monotonic() < t0:
            time.sleep(0.001)
        done = 0
        while time.monotonic() < t1:
            round_trip(model)
            done += time.monotonic() <= t1
        conn.send(done)
    client.close()


#: the throughput windows: the two stored copies of the model, and no run at all
MODES = ("unbatched", "batched", "")


def case_throughput(rep: Report, args: Any, run_simctl: bool) -> None:
    if not run_simctl:
        rep.skip("throughput", "simctl not importable")
        return
    import numpy as np
    import psutil

    pairs, seconds = (1, 1.0) if args.quick else (args.rounds or 3, args.seconds or 4.0)
    root = tempfile.mkdtemp(prefix="simctl-bench-inference-")
    procs: list[Any] = []
    conns: list[Any] = []
    try:
        model = build_models(root, {"big.onnx": (BIG, 0, "ONNX")})["big.onnx"]
        with store(root) as (db, client):
            worker = psutil.Process(worker_pid(db))
            server = [p for p in worker.parent().children() if p.pid != worker.pid][0]
            client.set_model("unbatched", model, "ONNX")
            client.set_model("batched", model, "ONNX", **BATCH)
            x = _input(1, BIG[0])
            client.put_tensor("x", x)
            client.run_model("unbatched", "x", "y0")
            client.run_model("batched", "x", "y1")
            rep.check("batched output", bool(np.allclose(client.get_tensor("y0"), client.get_tensor("y1"),
                                                          rtol=1e-4, atol=1e-5)),
                      "the batched model's output equals the unbatched one's")
            one = _pct(_times(lambda: client.run_model("unbatched", "x", "y0"), 100), 0.5)
            calls = {}
            for rows in (1, BATCH["batch_size"]):  # what one call costs in-process, alone on the machine
                mine, child = in_process("ONNX", model, BIG, rows)
                try:
                    mine.recv()
                    mine.send(100)
                    calls[rows] = _pct(mine.recv(), 0.5)
                finally:
                    end(mine, child)
            ctx = multiprocessing.get_context("spawn")
            for i in range(N_CLIENTS):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=_client, args=(db.get_address()[0], db.username, db.password, i, theirs))
                p.start()
                procs.append(p)
                conns.append(mine)
            for c in conns:
                if c.recv() != "ready":
                    raise RuntimeError("a client process did not start")
            watched = [worker, server] + [psutil.Process(p.pid) for p in procs]
            got: dict[str, list[float]] = {m: [] for m in MODES}
            cpu: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODES}
            for r in range(pairs):
                for mode in (MODES if r % 2 == 0 else MODES[1::-1] + MODES[2:]):
                    t0 = time.monotonic() + 0.2
                    for c in conns:
                        c.send((mode, t0, t0 + seconds))
                    before = [p.cpu_times() for p in watched]
                    done = sum(c.recv() for c in conns)
                    after = [p.cpu_times() for p in watched]
                    got[mode].append(done / seconds)
                    used = [(a.user + a.system - b.user - b.system) / seconds for a, b in zip(after, before)]
                    cpu[mode].append((used[0], used[1], sum(used[2:])))
            for c in conns:
                c.send(None)
            for p in procs:
                p.join(timeout=30)
        med = {m: statistics.median(v) for m, v in got.items()}
        ratio = med["batched"] / med["unbatched"]
        ratios = sorted(b / u for b, u in zip(got["batched"], got["unbatched"]))
        target(rep, args, f"throughput, {N_CLIENTS} client processes, ONNX MLP {'-'.join(map(str, BIG))}",
               ratio >= TARGET_BATCHING,
               f"batched {med['batched']:.0f} rounds/s | unbatched {med['unbatched']:.0f} rounds/s | ratio "
               f"{fmt_ratio(ratio)} (target >= {TARGET_BATCHING:g}x)", rounds=got, ratio=ratio)
        rep.info("throughput spread",
                 f"{pairs} pairs x {seconds:g} s, medians; per pair {fmt_ratio(ratios[0])}-{fmt_ratio(ratios[-1])}; "
                 f"batched {min(got['batched']):.0f}-{max(got['batched']):.0f}, unbatched "
                 f"{min(got['unbatched']):.0f}-{max(got['unbatched']):.0f} rounds/s; batched = {BATCH}; with "
                 f"nothing else running, one run_model {one * 1e3:.2f} ms, one call in-process "
                 f"{calls[1] * 1e3:.2f} ms for 1 row, {calls[BATCH['batch_size']] * 1e3:.2f} ms for "
                 f"{BATCH['batch_size']}")
        rep.info("throughput ceiling",
                 f"the same {N_CLIENTS} processes doing put_tensor + get_tensor only (no run_model): "
                 f"{med['']:.0f} rounds/s; batched reaches {med['batched'] / med['']:.0%} of it")
        for mode in MODES:
            w, srv, cl = (statistics.median(c[i] for c in cpu[mode]) for i in range(3))
            rep.info(f"throughput CPU, {mode or 'put+get only'}",
                     f"cores busy: worker {w:.2f}, server {srv:.2f}, {N_CLIENTS} clients {cl:.2f} (of "
                     f"{os.cpu_count()}); per round: worker {w / med[mode] * 1e6:.0f} us, server "
                     f"{srv / med[mode] * 1e6:.0f} us, clients {cl / med[mode] * 1e6:.0f} us")
    except Exception as exc:  # noqa: BLE001
        rep.exception("throughput", exc)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- memory

#: the baseline: a bare interpreter that imports the runtime and loads and runs the models as the backend does
BARE = """
import io, json, sys, psutil
runtime, paths = sys.argv[1], sys.argv[2:]
me = psutil.Process()
bare = me.memory_info().rss
import numpy as np
x = np.random.default_rng(0).random((1, int(json.loads(open(paths[0] + ".json").read())["cols"])), dtype=np.float32)
if runtime == "ONNX":
    import onnxruntime as ort
    imported = me.memory_info().rss
    models = []
    for p in paths:
        o = ort.SessionOptions(); o.log_severity_level = 3
        s = ort.InferenceSession(open(p, "rb").read(), sess_options=o, providers=["CPUExecutionProvider"])
        s.run(None, {s.get_inputs()[0].name: x})
        models.append(s)
else:
    import torch
    imported = me.memory_info().rss
    models = []
    for p in paths:
        m = torch.jit.load(io.BytesIO(open(p, "rb").read()), map_location="cpu"); m.eval()
        with torch.inference_mode():
            m(torch.from_numpy(x)).numpy()
        models.append(m)
print(json.dumps({"bare": bare, "imported": imported, "loaded": me.memory_info().rss}))
"""


def case_memory(rep: Report, args: Any, run_simctl: bool) -> None:
    if not run_simctl:
        rep.skip("memory", "simctl not importable")
        return
    import psutil

    root = tempfile.mkdtemp(prefix="simctl-bench-inference-")
    def mb(b: float) -> str:
        return f"{b / 2**20:.0f} MB"
    try:
        for runtime, ext in (("ONNX", "onnx"), ("TORCH", "pt")):
            files = {f"m{i}.{ext}": (MEM, i, runtime) for i in range(N_MEM_MODELS)}
            models = build_models(root, files)
            for name in files:
                Path(root, name + ".json").write_text(json.dumps({"cols": MEM[0]}))
            with store(root) as (db, client):
                pid = worker_pid(db)
                worker = psutil.Process(pid)
                rest = worker.memory_info().rss
                x = _input(1, MEM[0])
                client.put_tensor("x", x)
                for i, name in enumerate(files):
                    client.set_model(f"m{i}", models[name], runtime)
                    client.run_model(f"m{i}", "x", f"y{i}")
                loaded = worker.memory_info().rss
                if worker_pid(db) != pid:
                    raise RuntimeError("the worker was restarted during the measurement")
            out = subprocess.run([sys.executable, "-c", BARE, runtime] + [str(Path(root, n)) for n in files],
                                 capture_output=True, text=True, check=True)
            base = json.loads(out.stdout.strip().splitlines()[-1])
            rep.info(f"{runtime} worker RSS, {N_MEM_MODELS} models loaded",
                     f"worker {mb(loaded)} (at rest {mb(rest)}, +{mb(loaded - rest)}) | bare python + "
                     f"{runtime.lower()} runtime + the same models {mb(base['loaded'])} (python alone "
                     f"{mb(base['bare'])}, after import {mb(base['imported'])}) | worker - bare "
                     f"{mb(loaded - base['loaded'])}, ratio {fmt_ratio(loaded / base['loaded'])}",
                     worker_rest=rest, worker_loaded=loaded, **{f"bare_{k}": v for k, v in base.items()})
    except Exception as exc:  # noqa: BLE001
        rep.exception("memory", exc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


CASE_FUNCS = {"latency": case_latency, "throughput": case_throughput, "memory": case_memory}


def main() -> int:
    parser = bench_arg_parser(__doc__.splitlines()[0], CASES)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls, 1 s windows")
    parser.add_argument("--rounds", type=int, default=0, metavar="N",
                        help="latency repetitions (default 3) / throughput pairs (default 3)")
    parser.add_argument("--seconds", type=float, default=0.0, metavar="S",
                        help="throughput window per model and pair (default 4)")
    args = parser.parse_args()
    return run_cases("bench_inference", args, CASES, CASE_FUNCS)


if __name__ == "__main__":
    sys.exit(main())
