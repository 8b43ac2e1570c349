"""Shared helpers for the simctl benchmarks.

* :func:`import_simctl` - import the package under test (falls back to src/).
* :class:`Timer`, :func:`time_call` - wall-clock timing with perf_counter.
* :func:`measure_in_subprocess` - time + extra peak RSS of an operation in a
  fresh (spawned) interpreter, with setup excluded from both.
* :class:`Report` - consistent result lines, target checks and exit status,
  e.g. ``create 10k all_perm: simctl 0.012 s | peer 4.21 s | ratio 350x
  (target >= 100x) OK``.
* :func:`bench_arg_parser` - the flags every benchmark script shares.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

MB = 1024 * 1024


# --------------------------------------------------------------------------- import


class SimctlUnavailable(RuntimeError):
    """simctl could not be imported (not written or not installed yet)."""


def import_simctl():
    """Import simctl; if it is not installed, try the in-repo ``src/`` tree.

    Note: simctl registers its built-in strategies/launchers as entry points,
    which only exist once the package is installed (``pip install -e .``).
    """
    try:
        import simctl  # noqa: F401
    except ImportError:
        src = str(REPO_DIR / "src")
        if src not in sys.path:
            sys.path.insert(0, src)
        try:
            import simctl  # noqa: F401,F811
        except Exception as exc:  # noqa: BLE001 - report, don't crash the peer part
            raise SimctlUnavailable(f"cannot import simctl: {exc!r}") from exc
    except Exception as exc:  # noqa: BLE001
        raise SimctlUnavailable(f"cannot import simctl: {exc!r}") from exc
    return sys.modules["simctl"]


# --------------------------------------------------------------------------- timing


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.seconds = 0.0
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._t0


def time_call(op: Callable[[Any], Any], setup: Callable[[], Any] | None = None, *,
              repeat: int = 1, budget: float | None = None,
              teardown: Callable[[Any], None] | None = None) -> float:
    """Median wall time of ``op(setup())`` over ``repeat`` runs.

    ``setup`` (untimed) builds a fresh state for each run; ``teardown(state)``
    (untimed) cleans up. Stops repeating once ``budget`` seconds of measured
    time have been spent (at least one run is always made).
    """
    times: list[float] = []
    for _ in range(max(1, repeat)):
        state = setup() if setup is not None else None
        try:
            t0 = time.perf_counter()
            op(state)
            times.append(time.perf_counter() - t0)
        finally:
            if teardown is not None:
                teardown(state)
        if budget is not None and sum(times) >= budget:
            break
    return statistics.median(times)


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# --------------------------------------------------------------------------- memory


def _proc_status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0: clear_refs '5')."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _memory_child(setup: Callable[[], Any] | None, op: Callable[[Any], Any],
                  teardown: Callable[[Any], None] | None, use_tracemalloc: bool,
                  queue: multiprocessing.Queue) -> None:
    try:
        state = setup() if setup is not None else None
        gc.collect()
        if use_tracemalloc:
            import tracemalloc

            tracemalloc.start()
            tracemalloc.reset_peak()
        reset = _reset_peak_rss()
        base_kb = _proc_status_kb("VmRSS") if reset else _maxrss_kb()
        t0 = time.perf_counter()
        result = op(state)
        seconds = time.perf_counter() - t0
        peak_kb = _proc_status_kb("VmHWM") if reset else _maxrss_kb()
        traced_peak = None
        if use_tracemalloc:
            import tracemalloc

            traced_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        if teardown is not None:
            teardown(state)
        queue.put({
            "ok": True,
            "seconds": seconds,
            "extra_peak_rss_bytes": max(0, (peak_kb or 0) - (base_kb or 0)) * 1024,
            "base_rss_bytes": (base_kb or 0) * 1024,
            "method": "VmHWM after clear_refs" if reset else "ru_maxrss delta",
            "tracemalloc_peak_bytes": traced_peak,
            "result": result,
        })
    except BaseException as exc:  # noqa: BLE001 - ship it to the parent
        queue.put({"ok": False, "error": repr(exc), "traceback": traceback.format_exc()})


def measure_in_subprocess(op: Callable[[Any], Any], setup: Callable[[], Any] | None = None,
                          *, teardown: Callable[[Any], None] | None = None,
                          use_tracemalloc: bool = False, timeout: float = 600) -> dict[str, Any]:
    """Run ``op(setup())`` once in a fresh spawned interpreter.

    Returns ``seconds`` (op only), ``extra_peak_rss_bytes`` (peak RSS during
    the op minus RSS just before it; the peak mark is reset after setup so
    setup's allocations do not hide the op's), and ``result`` (op's return
    value, must be picklable). ``teardown(state)`` runs after the
    measurement. With ``use_tracemalloc`` also the peak of Python
    allocations (this slows the op, so ``seconds`` is then not a fair
    timing). ``op``/``setup``/``teardown`` must be module-level functions.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(setup, op, teardown, use_tracemalloc, queue))
    proc.start()
    deadline = time.monotonic() + timeout
    out = None
    while out is None:
        try:
            out = queue.get(timeout=0.5)
        except Exception:  # noqa: BLE001 - queue.Empty: is the child still there?
            if not proc.is_alive() or time.monotonic() > deadline:
                try:  # it may have put its result just before exiting
                    out = queue.get(timeout=1)
                    break
                except Exception:  # noqa: BLE001
                    pass
                proc.kill()
                proc.join()
                raise RuntimeError("measurement child produced no result "
                                   f"(exit code {proc.exitcode})") from None
    proc.join(timeout=30)
    if not out.get("ok"):
        raise RuntimeError(f"in subprocess: {out.get('error')}\n{out.get('traceback', '')}")
    return out


# --------------------------------------------------------------------------- reporting


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 0.001:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s:.3f} s"
    if s < 100:
        return f"{s:.2f} s"
    return f"{s:.0f} s"


def fmt_ratio(r: float) -> str:
    if r >= 100:
        return f"{r:.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    return f"{r:.2f}x"


def fmt_mb(n_bytes: float) -> str:
    return f"{n_bytes / MB:.1f} MB"


@dataclass
class Row:
    name: str
    status: str  # OK, MISS, FAIL, INFO, SKIP, WARN
    line: str
    data: dict[str, Any] = field(default_factory=dict)


class Report:
    """Collects result lines; :meth:`finish` prints a summary and returns the
    exit status (0: every target met, 1: a target missed or a case failed,
    2: simctl could not be measured at all)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[Row] = []
        self.simctl_unavailable: str | None = None
        print(f"== {title} ==", flush=True)

    # -- primitives
    def _add(self, name: str, status: str, line: str, **data: Any) -> Row:
        row = Row(name, status, line, data)
        self.rows.append(row)
        print(line, flush=True)
        return row

    def info(self, name: str, text: str, **data: Any) -> Row:
        return self._add(name, "INFO", f"{name}: {text}", **data)

    def warn(self, name: str, text: str, **data: Any) -> Row:
        return self._add(name, "WARN", f"{name}: {text} WARN", **data)

    def skip(self, name: str, why: str) -> Row:
        return self._add(name, "SKIP", f"{name}: skipped ({why})")

    def fail(self, name: str, why: str, **data: Any) -> Row:
        return self._add(name, "FAIL", f"{name}: FAILED: {why}", **data)

    def exception(self, name: str, exc: BaseException) -> Row:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return self.fail(name, f"{type(exc).__name__}: {exc}")

    # -- target checks
    def speedup(self, name: str, ours: float, other: float, min_ratio: float,
                other_label: str = "peer", **data: Any) -> Row:
        """ours faster than other by >= min_ratio (ratio = other / ours)."""
        ratio = other / ours if ours > 0 else float("inf")
        ok = ratio >= min_ratio
        line = (f"{name}: simctl {fmt_seconds(ours)} | {other_label} {fmt_seconds(other)} | "
                f"ratio {fmt_ratio(ratio)} (target >= {min_ratio:g}x) {'OK' if ok else 'MISS'}")
        return self._add(name, "OK" if ok else "MISS", line, simctl_s=ours,
                         other_s=other, other=other_label, ratio=ratio,
                         target_min_ratio=min_ratio, **data)

    def slowdown(self, name: str, ours: float, base: float, max_factor: float,
                 base_label: str, **data: Any) -> Row:
        """ours no slower than max_factor x base (factor = ours / base)."""
        factor = ours / base if base > 0 else float("inf")
        ok = factor <= max_factor
        line = (f"{name}: simctl {fmt_seconds(ours)} | {base_label} {fmt_seconds(base)} | "
                f"simctl/{base_label} {fmt_ratio(factor)} (target <= {max_factor:g}x) "
                f"{'OK' if ok else 'MISS'}")
        return self._add(name, "OK" if ok else "MISS", line, simctl_s=ours, base_s=base,
                         base=base_label, factor=factor, target_max_factor=max_factor, **data)

    def below(self, name: str, value: float, limit: float, fmt: Callable[[float], str] = fmt_seconds,
              extra: str = "", label: str = "simctl", **data: Any) -> Row:
        """value < limit (absolute target)."""
        ok = value < limit
        line = (f"{name}: {label} {fmt(value)} (target < {fmt(limit)}) {'OK' if ok else 'MISS'}"
                + (f" | {extra}" if extra else ""))
        return self._add(name, "OK" if ok else "MISS", line, value=value, limit=limit, **data)

    def check(self, name: str, ok: bool, text: str, **data: Any) -> Row:
        """A correctness check: OK or FAIL."""
        return self._add(name, "OK" if ok else "FAIL",
                         f"{name}: {text} {'OK' if ok else 'FAILED'}", **data)

    def peer_only(self, name: str, peer_s: float, note: str = "", **data: Any) -> Row:
        line = f"{name}: peer {fmt_seconds(peer_s)} (simctl not measured)" + (f" | {note}" if note else "")
        return self._add(name, "INFO", line, peer_s=peer_s, **data)

    # -- end
    def finish(self, json_path: str | None = None) -> int:
        missed = [r for r in self.rows if r.status in ("MISS", "FAIL")]
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        if self.simctl_unavailable:
            code = 2
        else:
            code = 1 if missed else 0
        print(f"== {self.title}: {summary or 'nothing run'}; exit {code} ==", flush=True)
        for r in missed:
            print(f"   not met: {r.line}", flush=True)
        if json_path:
            payload = {"title": self.title, "exit": code,
                       "simctl_unavailable": self.simctl_unavailable,
                       "rows": [asdict(r) for r in self.rows]}
            Path(json_path).write_text(json.dumps(payload, indent=1, default=str))
        return code


# --------------------------------------------------------------------------- CLI


def bench_arg_parser(description: str, cases: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--skip-peer", action="store_true",
                   help="do not run SmartSim (no peer venv needed); peer ratios are skipped")
    p.add_argument("--peer-only", action="store_true",
                   help="run only the SmartSim side (works before simctl exists)")
    p.add_argument("--peer-repeat", type=int, default=1, metavar="N",
                   help="run each peer op N times and use its fastest run (default 1)")
    p.add_argument("--only", default="",
                   help=f"comma-separated subset of cases: {','.join(cases)}")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--tmpdir", metavar="DIR", default="auto",
                   help="where both sides make their temp dirs (sets TMPDIR, which the peer "
                        "inherits). 'auto' (default): a tmpfs (/dev/shm/simctl-bench) when "
                        "available, else the system temp dir; 'system': the system temp dir")
    return p


SHM_ROOT = "/dev/shm/simctl-bench"


def apply_tmpdir(args: argparse.Namespace) -> str:
    """Honour --tmpdir for us, spawned children and the peer; return the dir used.

    Why a tmpfs by default: on ext4, creating inodes shortly after many were
    deleted is slow (the allocator's recently_deleted() check skips inodes
    freed within the last minutes), so whichever side runs after a 10,000-dir
    cleanup pays for it, and the figures swing by 10x with what else runs on
    the machine. A tmpfs measures the frameworks, not that.
    """
    import tempfile

    choice = getattr(args, "tmpdir", None) or "system"
    path = None
    if choice == "auto":
        try:
            if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
                os.makedirs(SHM_ROOT, exist_ok=True)
                path = SHM_ROOT
        except OSError:
            path = None
    elif choice != "system":
        path = os.path.abspath(choice)
        os.makedirs(path, exist_ok=True)
    if path:
        os.environ["TMPDIR"] = path
        tempfile.tempdir = None  # re-read TMPDIR
    return tempfile.gettempdir()


def selected_cases(args: argparse.Namespace, cases: list[str]) -> list[str]:
    if not args.only:
        return list(cases)
    wanted = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(cases))
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {cases}")
    return [c for c in cases if c in wanted]


def environment_line() -> str:
    import platform
    import tempfile

    return (f"python {platform.python_version()} | {os.cpu_count()} cpu | "
            f"load {os.getloadavg()[0]:.2f} | {platform.platform()} | "
            f"tmp {tempfile.gettempdir()}")


def run_cases(name: str, args: argparse.Namespace, cases: list[str],
              funcs: dict[str, Callable[[Any, argparse.Namespace, bool], None]]) -> int:
    """The body of every benchmark script's ``main``: check the flags, pick the
    temp dir, import simctl (unless ``--peer-only``), run the chosen cases and
    return the exit status."""
    if args.skip_peer and args.peer_only:
        raise SystemExit("--skip-peer and --peer-only exclude each other")
    apply_tmpdir(args)
    rep = Report(name)
    print(environment_line(), flush=True)
    run_simctl = not args.peer_only
    if run_simctl:
        try:
            simctl = import_simctl()
            print(f"simctl {getattr(simctl, '__version__', '?')} from "
                  f"{os.path.dirname(simctl.__file__)}", flush=True)
        except SimctlUnavailable as exc:
            rep.simctl_unavailable = str(exc)
            rep.fail("simctl", str(exc))
            run_simctl = False
    for case in selected_cases(args, cases):
        funcs[case](rep, args, run_simctl)
    return rep.finish(args.json)
