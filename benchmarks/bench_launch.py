"""Local-launcher benchmarks (simctl vs SmartSim 0.8.0 and bare subprocess.Popen).

    python benchmarks/bench_launch.py [--skip-peer | --peer-only] [--only CASES]
                                      [--peer-no-telemetry] [--peer-repeat N]
                                      [--tmpdir DIR] [--json PATH]

Cases and targets (exit status 1 if one is missed, 2 if simctl is not importable):
  true100   100-member ensemble of `true`, generated (untimed), then timed
            exp.start(ens, block=True): >= 50x faster than the peer, and within
            10x of bare subprocess.Popen of 100 `true` started then waited
  sleep1000 1,000-member ensemble of `sleep 1` completes with no errors
            (every member COMPLETED); wall time reported
  cpu       driver CPU (getrusage RUSAGE_SELF user+sys) while blocking on 100
            members that `sleep 10`, as % of one core: < 2 % in steady state
            (from 2 s after start() is called until it returns); the whole
            call, launch included, is reported too

The peer is measured with its defaults (telemetry on: each member runs through
a Python proxy). --peer-no-telemetry adds an informational peer run with
SMARTSIM_FLAG_TELEMETRY=0 (about 25 s: its launcher sleeps 0.2 s per member).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Report,
    bench_arg_parser,
    cpu_seconds,
    fmt_seconds,
    run_cases,
    time_call,
)

CASES = ["true100", "sleep1000", "cpu"]

N_TRUE = 100
N_SLEEP = 1000
N_CPU = 100
CPU_SLEEP_SECONDS = 10
CPU_SETTLE_SECONDS = 2.0

TARGET_PEER_RATIO = 50
TARGET_POPEN_FACTOR = 10
TARGET_CPU_PERCENT = 2.0

TRUE = shutil.which("true") or "/bin/true"
SLEEP = shutil.which("sleep") or "/bin/sleep"


# --------------------------------------------------------------------------- simctl side


class _Launch:
    """Fresh temp dir, Experiment and a generated ensemble of `replicas`
    members running `exe exe_args` (all untimed)."""

    def __init__(self, replicas: int, exe: str, exe_args: list[str] | None = None) -> None:
        from simctl import Experiment

        self.dir = tempfile.mkdtemp(prefix="simctl-bench-launch-")
        self.replicas = replicas
        try:
            self.exp = Experiment("bench", exp_path=self.dir, launcher="local")
            kwargs: dict[str, Any] = {"exe": exe}
            if exe_args:
                kwargs["exe_args"] = exe_args
            rs = self.exp.create_run_settings(**kwargs)
            self.ens = self.exp.create_ensemble("ens", run_settings=rs, replicas=replicas)
            self.exp.generate(self.ens, overwrite=True)
        except BaseException:
            self.cleanup()
            raise

    def statuses(self) -> tuple[bool, dict[str, int]]:
        from simctl import Status

        got = list(self.exp.get_status(self.ens))
        counts: dict[str, int] = {}
        for s in got:
            key = getattr(s, "name", str(s))
            counts[key] = counts.get(key, 0) + 1
        ok = len(got) == self.replicas and all(s == Status.COMPLETED for s in got)
        return ok, counts

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def popen_baseline(n: int) -> float:
    def op(_: Any) -> None:
        procs = [subprocess.Popen([TRUE]) for _ in range(n)]
        for p in procs:
            p.wait()

    op(None)  # warm-up
    return time_call(op, repeat=5)


# --------------------------------------------------------------------------- cases


def case_true100(rep: Report, args: Any, run_simctl: bool) -> None:
    name = f"start {N_TRUE} true"
    peer = None
    if not args.skip_peer:
        from peer import run_peer

        try:
            peer = run_peer("start_true", n=N_TRUE, repeat=args.peer_repeat)
            if not peer.get("all_completed"):
                rep.warn(f"{name} (peer)", f"peer statuses {peer.get('statuses')}")
        except Exception as exc:  # noqa: BLE001
            rep.exception(f"{name} (peer)", exc)
    base = popen_baseline(N_TRUE)
    if not run_simctl:
        if peer:
            rep.peer_only(name, peer["seconds"], f"statuses {peer['statuses']}, peer cpu incl. "
                          f"members {fmt_seconds(peer.get('cpu_seconds'))}", peer=peer)
        rep.info(f"{name} baseline", f"subprocess.Popen x{N_TRUE} {fmt_seconds(base)}")
        _peer_no_telemetry(rep, args, name)
        return

    results: list[tuple[bool, dict[str, int]]] = []

    def setup() -> _Launch:
        return _Launch(N_TRUE, TRUE)

    def op(launch: _Launch) -> None:
        launch.exp.start(launch.ens, block=True)

    def teardown(launch: _Launch) -> None:
        results.append(launch.statuses())
        launch.cleanup()

    try:
        ours = time_call(op, setup, repeat=3, budget=10, teardown=teardown)
    except Exception as exc:  # noqa: BLE001
        rep.exception(name, exc)
        return
    rep.check(f"{name} statuses", all(ok for ok, _ in results),
              f"{[counts for _, counts in results]}")
    if peer:
        rep.speedup(name, ours, peer["seconds"], TARGET_PEER_RATIO, peer=peer)
    else:
        rep.info(name, f"simctl {fmt_seconds(ours)} (peer skipped)")
    rep.slowdown(f"{name} vs Popen", ours, base, TARGET_POPEN_FACTOR, "popen")
    _peer_no_telemetry(rep, args, name)


def _peer_no_telemetry(rep: Report, args: Any, name: str) -> None:
    """Informational: the peer with its telemetry proxy/monitor switched off."""
    if args.skip_peer or not args.peer_no_telemetry:
        return
    from peer import run_peer

    try:
        quiet = run_peer("start_true", n=N_TRUE, telemetry=False, repeat=args.peer_repeat)
    except Exception as exc:  # noqa: BLE001
        rep.exception(f"{name} (peer, telemetry off)", exc)
        return
    rep.info(f"{name} (peer, telemetry off)", f"peer {fmt_seconds(quiet['seconds'])} "
             f"(informational; its local launcher sleeps 0.2 s after each launch "
             f"and block=True polls every 5 s)", peer=quiet)


def case_sleep1000(rep: Report, args: Any, run_simctl: bool) -> None:
    name = f"start {N_SLEEP} sleep 1"
    if not run_simctl:
        rep.skip(name, "simctl not measured; no peer figure for this case")
        return
    launch = None
    try:
        launch = _Launch(N_SLEEP, SLEEP, ["1"])
        t0 = time.perf_counter()
        launch.exp.start(launch.ens, block=True)
        wall = time.perf_counter() - t0
        ok, counts = launch.statuses()
    except Exception as exc:  # noqa: BLE001
        rep.exception(name, exc)
        return
    finally:
        if launch is not None:
            launch.cleanup()
    rep.check(name, ok, f"wall {fmt_seconds(wall)}, statuses {counts}", wall_s=wall,
              statuses=counts)


def case_cpu(rep: Report, args: Any, run_simctl: bool) -> None:
    name = f"driver cpu, {N_CPU} x sleep {CPU_SLEEP_SECONDS}"
    if not run_simctl:
        rep.skip(name, "simctl not measured; no peer figure for this case")
        return
    launch = None
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter(), cpu_seconds()))
            stop.wait(0.25)

    try:
        launch = _Launch(N_CPU, SLEEP, [str(CPU_SLEEP_SECONDS)])
        thread = threading.Thread(target=sampler, daemon=True)
        t0, c0 = time.perf_counter(), cpu_seconds()
        thread.start()
        try:
            launch.exp.start(launch.ens, block=True)
        finally:
            t1, c1 = time.perf_counter(), cpu_seconds()
            stop.set()
            thread.join()
        ok, counts = launch.statuses()
    except Exception as exc:  # noqa: BLE001
        rep.exception(name, exc)
        return
    finally:
        if launch is not None:
            launch.cleanup()
    wall = t1 - t0
    rep.check(f"{name} statuses", ok and wall >= CPU_SLEEP_SECONDS * 0.9,
              f"wall {fmt_seconds(wall)}, statuses {counts}")
    overall = 100.0 * (c1 - c0) / wall if wall > 0 else float("nan")
    settled = [(t, c) for t, c in samples if t >= t0 + CPU_SETTLE_SECONDS]
    if not settled or t1 - settled[0][0] < 1.0:
        rep.fail(name, f"start() returned after {fmt_seconds(wall)}; no steady-state window")
        return
    ts, cs = settled[0]
    steady = 100.0 * (c1 - cs) / (t1 - ts)
    rep.below(f"{name} (steady)", steady, TARGET_CPU_PERCENT, fmt=lambda v: f"{v:.2f}% of a core",
              extra=f"whole start() incl. launch: {overall:.2f}% over {fmt_seconds(wall)} "
                    f"({c1 - c0:.3f} s cpu)",
              steady_window_s=t1 - ts, overall_percent=overall)


CASE_FUNCS = {"true100": case_true100, "sleep1000": case_sleep1000, "cpu": case_cpu}


def main() -> int:
    parser = bench_arg_parser(__doc__.splitlines()[0], CASES)
    parser.add_argument("--peer-no-telemetry", action="store_true",
                        help="also time the peer with SMARTSIM_FLAG_TELEMETRY=0 (informational)")
    args = parser.parse_args()
    return run_cases("bench_launch", args, CASES, CASE_FUNCS)


if __name__ == "__main__":
    sys.exit(main())
