"""Scale benchmarks: start() and watching of 20,000 / 100,000 members, and the manifest.

    python benchmarks/bench_scale.py [--only start,watch,manifest] [--repeat R] [--json PATH]

No peer, no processes: the jobs belong to launchers defined here, in-process
plugins registered with ``plugins.register(..., name=...)``. Every timed run
is made in a fresh (spawned) interpreter, so one run's heap does not slow the
next; each figure is the fastest of --repeat runs (default 3), with the range.

  start     exp.start(ens, block=True) of N = 20,000 and 100,000 members (made
            before timing) with the "null" launcher: start() sets job_id on
            every step, its first status call reports every job RUNNING and
            the next COMPLETED. Baselines in the same run and conditions:
            "steps", making the N ProcessStep objects (what planning must
            make); "loop", a plain loop doing the same bookkeeping (per member
            a ProcessStep, a JobRecord in a dict, and the record serialized
            for each of its 3 states, QUEUED, RUNNING, COMPLETED, written to
            a file). Targets: simctl <= 6x the loop at 100,000; and, "steady"
            (every poll cycle saved at once, SAVE_EVERY = 0, and the cyclic
            garbage collector off), time per member at 100,000 <= 1.25x that
            at 20,000: the work per member is constant. With the defaults
            (also reported) per-member figures grow with n, the baselines'
            too: each full collection walks the whole heap, and the bigger n,
            the less the interpreter's own objects dilute it; and the faster
            a run, the more of its status changes one 0.25 s save takes in.
  watch     100,000 members with the "rolling" launcher: each status call
            turns the next 2,000 members RUNNING and the previous 2,000
            COMPLETED (the others stay QUEUED, as recorded), so every poll
            cycle changes 4,000 records out of 100,000. Each manifest save is
            timed (a wrapper around the save). Target: the save's cost per
            changed record at most 4x the JSON encoding of one record
            (``json.dumps(converter.unstructure(record))``, timed in the same
            run): proportional to what changed, not to the 100,000 records.
  manifest  a save of 100 changed records in a manifest of 1,000 records and
            of 100,000 (mean of 50 saves, compactions included). Target: the
            100,000 one <= 3x the 1,000 one. Also: load of the 100,000-record
            manifest against json.loads of the same bytes.

Against simctl before the journal (the manifest rewritten whole), the
``watch`` and ``manifest`` cases time ``manifest.save`` instead.
The --skip-peer / --peer-only / --peer-repeat flags are accepted and unused.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Report,
    bench_arg_parser,
    fmt_ratio,
    fmt_seconds,
    measure_in_subprocess,
    run_cases,
)

CASES = ["start", "watch", "manifest"]
SIZES = (20_000, 100_000)
WATCH_N = 100_000
WATCH_STEP = 2_000
MANIFEST_SIZES = (1_000, 100_000)
MANIFEST_CHANGED = 100
MANIFEST_SAVES = 50

TARGET_LINEAR = 1.25
TARGET_VS_LOOP = 6.0
TARGET_WATCH_PER_RECORD = 4.0
TARGET_MANIFEST_SIZE = 3.0


# --------------------------------------------------------------------------- launchers


def _plugins(kind: str) -> Any:
    """A fresh plugin manager with the benchmark's launchers registered in-process."""
    import simctl
    from simctl import JobStatus, Launcher, Status

    running, completed = JobStatus(Status.RUNNING), JobStatus(Status.COMPLETED, 0)
    queued = JobStatus(Status.QUEUED)

    class NullLauncher(Launcher):
        """Does nothing: every job RUNNING at the first status call, COMPLETED at the next."""

        name = "null"
        poll_bounds = (0.01, 0.1)

        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.seen: set = set()

        def start(self, launches: Any) -> None:
            for i, step in enumerate(launches):
                step.job_id = str(i)

        def status(self, job_ids: Any) -> dict[str, Any]:
            out = {}
            for i in job_ids:
                out[i] = completed if i in self.seen else running
                self.seen.add(i)
            return out

        def stop(self, job_ids: Any) -> dict[str, Any]:
            return {i: JobStatus(Status.CANCELLED) for i in job_ids}

    class RollingLauncher(NullLauncher):
        """Call c: members [c*K, (c+1)*K) RUNNING, those below COMPLETED, the rest QUEUED."""

        name = "rolling"

        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.calls = 0

        def status(self, job_ids: Any) -> dict[str, Any]:
            low, high = self.calls * WATCH_STEP, (self.calls + 1) * WATCH_STEP
            self.calls += 1
            return {i: completed if int(i) < low else running if int(i) < high else queued for i in job_ids}

    class Plugin:
        @simctl.hookimpl
        def simctl_register_launchers(self) -> list[Any]:
            return [NullLauncher, RollingLauncher]

    plugs = simctl.make_plugins()
    plugs.register(Plugin(), name="bench-scale-launchers")
    return plugs


# --------------------------------------------------------------------------- start (child side)


def _setup_start(n: int, kind: str = "null") -> dict[str, Any]:
    from simctl import Experiment

    directory = tempfile.mkdtemp(prefix="simctl-bench-scale-")
    exp = Experiment("scale", exp_path=directory, launcher=kind, plugins=_plugins(kind))
    ens = exp.create_ensemble("ens", run_settings=exp.create_run_settings("true"), replicas=n)
    _ = ens.models  # members made before timing
    return {"exp": exp, "ens": ens, "dir": directory, "n": n}


def _op_start(state: dict[str, Any]) -> dict[str, Any]:
    from simctl import Status

    state["exp"].start(state["ens"], block=True)
    got = state["exp"].get_status(state["ens"])
    return {"completed": sum(s is Status.COMPLETED for s in got), "n": state["n"]}


def _teardown(state: dict[str, Any]) -> None:
    exp = state.get("exp")
    if exp is not None:
        exp.close()
    shutil.rmtree(state["dir"], ignore_errors=True)


def _setup_steps(n: int) -> dict[str, Any]:
    import simctl  # noqa: F401 - imported before timing, as for the simctl runs
    from simctl.core import manifest, serialize  # noqa: F401

    return {"n": n, "dir": tempfile.mkdtemp(prefix="simctl-bench-scale-")}


def _op_steps(state: dict[str, Any]) -> int:
    from simctl import ProcessStep

    cwd = state["dir"]
    steps = [ProcessStep(name=f"ens_{i}", argv=["true"], cwd=cwd, env={}, out=os.path.join(cwd, f"ens_{i}.out"),
                         err=os.path.join(cwd, f"ens_{i}.err"), key=f"ens/ens_{i}") for i in range(state["n"])]
    return len(steps)


def _op_loop(state: dict[str, Any]) -> int:
    """The same bookkeeping as a plain loop: step, record, three serialized states."""
    from simctl import ProcessStep, Status
    from simctl.core import manifest as mf
    from simctl.core.serialize import converter

    cwd = state["dir"]
    now = time.time()
    records: dict[str, Any] = {}
    lines: list[str] = []
    for i in range(state["n"]):
        key = f"ens/ens_{i}"
        step = ProcessStep(name=f"ens_{i}", argv=["true"], cwd=cwd, env={}, out=os.path.join(cwd, f"ens_{i}.out"),
                           err=os.path.join(cwd, f"ens_{i}.err"), key=key)
        step.job_id = str(i)
        records[key] = mf.JobRecord(name=step.name, entity_type="Model", job_id=step.job_id, run=1,
                                    launcher="null", status=Status.QUEUED, ensemble="ens", path=cwd,
                                    launched_at=now, key=key)
    for status in (Status.QUEUED, Status.RUNNING, Status.COMPLETED):
        for rec in records.values():
            rec.status = status
            lines.append(json.dumps(converter.unstructure(rec)))
    with open(os.path.join(cwd, "loop.log"), "w") as fh:
        fh.write("\n".join(lines))
    return len(records)


def _fastest(op: Any, setup: Any, repeat: int) -> tuple[float, list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        out = measure_in_subprocess(op, setup, teardown=_teardown)
        times.append(out["seconds"])
        result = out["result"]
    return min(times), times, result


def _spread(times: list[float]) -> str:
    return f"{fmt_seconds(min(times))}-{fmt_seconds(max(times))}"


def _steady(setup: Any) -> dict[str, Any]:
    """``setup()``, then every poll cycle's changes saved at once (the
    controller's SAVE_EVERY = 0: 3 saves whatever n, where the default
    spacing of 0.25 s merges more of them the faster a run is) and the
    cyclic garbage collector switched off for the timed op."""
    import gc

    from simctl.core import controller

    state = setup()
    controller.SAVE_EVERY = 0
    gc.collect()
    gc.disable()
    return state


def case_start(rep: Report, args: Any, run_simctl: bool) -> None:
    if not run_simctl:
        rep.skip("start", "simctl not measured")
        return
    import functools

    per: dict[str, dict[int, float]] = {"simctl": {}, "steady": {}, "steps": {}, "loop": {}}
    for n in SIZES:
        name = f"start {n:,}"
        try:
            setup = functools.partial(_setup_start, n)
            ours, ours_all, result = _fastest(_op_start, setup, args.repeat)
            quiet, quiet_all, _ = _fastest(_op_start, functools.partial(_steady, setup), args.repeat)
            steps, steps_all, _ = _fastest(_op_steps, functools.partial(_setup_steps, n), args.repeat)
            loop, loop_all, _ = _fastest(_op_loop, functools.partial(_setup_steps, n), args.repeat)
        except Exception as exc:  # noqa: BLE001
            rep.exception(name, exc)
            continue
        rep.check(f"{name} statuses", result["completed"] == n, f"{result['completed']} of {n} COMPLETED")
        for label, value in (("simctl", ours), ("steady", quiet), ("steps", steps), ("loop", loop)):
            per[label][n] = value / n
        rep.info(name, f"simctl {fmt_seconds(ours)} ({ours / n * 1e6:.1f} us/member; runs {_spread(ours_all)}) "
                       f"| steady {fmt_seconds(quiet)} ({quiet / n * 1e6:.1f} us; {_spread(quiet_all)}) "
                       f"| steps {fmt_seconds(steps)} ({steps / n * 1e6:.2f} us; {_spread(steps_all)}) "
                       f"| loop {fmt_seconds(loop)} ({loop / n * 1e6:.1f} us; {_spread(loop_all)}) "
                       f"| simctl/steps {fmt_ratio(ours / steps)}",
                 simctl_s=ours_all, steady_s=quiet_all, steps_s=steps_all, loop_s=loop_all)
        if n == SIZES[-1]:
            rep.slowdown(f"{name} vs loop", ours, loop, TARGET_VS_LOOP, "loop")
    small, big = SIZES
    if small in per["simctl"] and big in per["simctl"]:
        growth = {k: v[big] / v[small] for k, v in per.items()}
        rep.check("start linear", growth["steady"] <= TARGET_LINEAR,
                  f"time per member at {big:,} / at {small:,}, steady: simctl {growth['steady']:.2f} "
                  f"(target <= {TARGET_LINEAR:g}); defaults: simctl {growth['simctl']:.2f}, steps "
                  f"{growth['steps']:.2f}, loop {growth['loop']:.2f}", growth=growth)


# --------------------------------------------------------------------------- watch


def _op_watch(state: dict[str, Any]) -> dict[str, Any]:
    from simctl import Status
    from simctl.core import manifest as mf
    from simctl.core.serialize import converter

    saves: list[tuple[int, float]] = []
    if hasattr(mf, "Writer"):
        real = mf.Writer.save

        def timed(self: Any, header: Any, records: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return real(self, header, records, **kw)
            finally:
                saves.append((len(records), time.perf_counter() - t0))

        mf.Writer.save = timed  # type: ignore[method-assign]
        c = state["exp"].controller
        real_save = c._save

        def outer(force: bool = False) -> None:  # the whole save, copying under the lock included
            t0 = time.perf_counter()
            before = len(saves)
            real_save(force)
            if len(saves) > before:
                n, _ = saves[-1]
                saves[-1] = (n, time.perf_counter() - t0)

        c._save = outer  # type: ignore[method-assign]
    else:  # before the journal: the whole manifest is written on each save
        real_old = mf.save

        def timed_old(manifest: Any) -> None:
            t0 = time.perf_counter()
            try:
                real_old(manifest)
            finally:
                saves.append((len(manifest.jobs), time.perf_counter() - t0))

        mf.save = timed_old  # type: ignore[assignment]
    t0, c0 = time.perf_counter(), time.process_time()
    state["exp"].start(state["ens"], block=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    got = state["exp"].get_status(state["ens"])
    one = len(json.dumps(converter.unstructure(state["exp"].summary_data()[-1])))
    sample = state["exp"].summary_data()[:10_000]
    t1 = time.perf_counter()
    for r in sample:
        json.dumps(converter.unstructure(r))
    encode = (time.perf_counter() - t1) / len(sample)
    return {"completed": sum(s is Status.COMPLETED for s in got), "wall": wall, "cpu": cpu, "saves": saves,
            "record_bytes": one, "encode_s": encode, "journal": hasattr(mf, "Writer")}


def case_watch(rep: Report, args: Any, run_simctl: bool) -> None:
    if not run_simctl:
        rep.skip("watch", "simctl not measured")
        return
    import functools

    name = f"watch {WATCH_N:,}"
    runs = []
    try:
        for _ in range(args.repeat):
            out = measure_in_subprocess(_op_watch, functools.partial(_setup_start, WATCH_N, "rolling"),
                                        teardown=_teardown)
            runs.append(out["result"])
    except Exception as exc:  # noqa: BLE001
        rep.exception(name, exc)
        return
    rep.check(f"{name} statuses", all(r["completed"] == WATCH_N for r in runs),
              f"{[r['completed'] for r in runs]} COMPLETED")
    best = min(runs, key=lambda r: r["wall"])
    saves = best["saves"]
    later = saves[1:]  # the first save records all 100,000 launches
    per_record = [s / n for n, s in later if n]
    encode = best["encode_s"]
    rep.info(name, f"wall {fmt_seconds(best['wall'])} (runs {_spread([r['wall'] for r in runs])}), driver cpu "
                   f"{fmt_seconds(best['cpu'])}; {len(saves)} saves; first save ({saves[0][0]:,} records) "
                   f"{fmt_seconds(saves[0][1])}; later saves: median {statistics.median(n for n, _ in later):,.0f} "
                   f"records in {fmt_seconds(statistics.median(s for _, s in later))}, longest "
                   f"{fmt_seconds(max(s for _, s in later))}; one record {best['record_bytes']} bytes, "
                   f"encoded in {encode * 1e6:.1f} us",
             wall=[r["wall"] for r in runs], cpu=[r["cpu"] for r in runs], saves=saves)
    if best["journal"]:
        cost = sum(s for _, s in later) / sum(n for n, _ in later)
        rep.below(f"{name} save per changed record", cost / encode, TARGET_WATCH_PER_RECORD,
                  fmt=lambda v: f"{v:.2f}x one record's encoding",
                  extra=f"{cost * 1e6:.1f} us per changed record, "
                        f"median save {statistics.median(per_record) * 1e6:.1f} us"
                        " per record")
    else:
        rep.info(f"{name} save per changed record", "the whole manifest is written on each save: "
                 f"{statistics.median(s for _, s in later) / WATCH_N * 1e6:.1f} us per record written, "
                 f"{len(later)} saves of {WATCH_N:,} records")


# --------------------------------------------------------------------------- manifest


def _setup_manifest(n: int) -> dict[str, Any]:
    from simctl import Status
    from simctl.core import manifest as mf

    directory = tempfile.mkdtemp(prefix="simctl-bench-scale-")
    now = time.time()
    records = [mf.JobRecord(name=f"ens_{i}", entity_type="Model", job_id=str(i), run=1, launcher="null",
                            status=Status.RUNNING, ensemble="ens", path=os.path.join(directory, f"ens_{i}"),
                            launched_at=now, key=f"ens/ens_{i}", handle={"pid": 100000 + i, "create_time": now})
               for i in range(n)]
    man = mf.Manifest("scale", directory, "null", jobs=records)
    state: dict[str, Any] = {"dir": directory, "man": man, "n": n}
    if hasattr(mf, "Writer"):
        writer = mf.Writer(directory)
        writer.save(man.header(), mf.encode(records))
        state["writer"] = writer
    else:
        mf.save(man)
    return state


def _op_manifest(state: dict[str, Any]) -> dict[str, Any]:
    from simctl import Status
    from simctl.core import manifest as mf

    man, n = state["man"], state["n"]
    times = []
    for k in range(MANIFEST_SAVES):
        changed = man.jobs[(k * MANIFEST_CHANGED) % n:][:MANIFEST_CHANGED]
        for r in changed:
            r.status, r.returncode = Status.COMPLETED, k
        t0 = time.perf_counter()
        if "writer" in state:
            state["writer"].save(man.header(), mf.encode(changed))
        else:
            mf.save(man)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    loaded = mf.load(state["dir"])
    load_s = time.perf_counter() - t0
    ok = [(r.key, r.status, r.returncode) for r in loaded.jobs] == [(r.key, r.status, r.returncode) for r in man.jobs]
    path = mf.path_of(state["dir"])
    journal = os.path.join(os.path.dirname(path), "manifest.log")
    raw = open(path, "rb").read()
    t0 = time.perf_counter()
    json.loads(raw)
    json_s = time.perf_counter() - t0
    return {"mean": statistics.mean(times), "median": statistics.median(times), "max": max(times),
            "load_s": load_s, "json_s": json_s, "ok": ok, "bytes": len(raw),
            "journal_bytes": os.path.getsize(journal) if os.path.exists(journal) else 0}


def case_manifest(rep: Report, args: Any, run_simctl: bool) -> None:
    if not run_simctl:
        rep.skip("manifest", "simctl not measured")
        return
    import functools

    means: dict[int, float] = {}
    for n in MANIFEST_SIZES:
        name = f"manifest {n:,}"
        try:
            runs = [measure_in_subprocess(_op_manifest, functools.partial(_setup_manifest, n),
                                          teardown=_teardown)["result"] for _ in range(args.repeat)]
        except Exception as exc:  # noqa: BLE001
            rep.exception(name, exc)
            continue
        rep.check(f"{name} load", all(r["ok"] for r in runs), "load after the saves equals the state")
        best = min(runs, key=lambda r: r["mean"])
        means[n] = best["mean"]
        rep.info(name, f"save of {MANIFEST_CHANGED} changed records: mean {fmt_seconds(best['mean'])} "
                       f"(runs {_spread([r['mean'] for r in runs])}), median {fmt_seconds(best['median'])}, "
                       f"longest {fmt_seconds(best['max'])} | load {fmt_seconds(best['load_s'])} vs json.loads "
                       f"of the snapshot {fmt_seconds(best['json_s'])} | snapshot {best['bytes'] / 1e6:.1f} MB, "
                       f"journal {best['journal_bytes'] / 1e6:.2f} MB",
                 runs=runs)
    small, big = MANIFEST_SIZES
    if small in means and big in means:
        rep.slowdown(f"manifest save, {big:,} vs {small:,} records", means[big], means[small],
                     TARGET_MANIFEST_SIZE, f"{small:,} records")


CASE_FUNCS = {"start": case_start, "watch": case_watch, "manifest": case_manifest}


def main() -> int:
    parser = bench_arg_parser(__doc__.splitlines()[0], CASES)
    parser.add_argument("--repeat", type=int, default=3, metavar="R",
                        help="runs per figure, each in a fresh interpreter (default 3; the fastest is used)")
    args = parser.parse_args()
    return run_cases("bench_scale", args, CASES, CASE_FUNCS)


if __name__ == "__main__":
    sys.exit(main())
