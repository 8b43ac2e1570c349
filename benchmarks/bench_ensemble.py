"""Ensemble construction / expansion / generation benchmarks (simctl vs SmartSim 0.8.0).

    python benchmarks/bench_ensemble.py [--skip-peer | --peer-only] [--only CASES]
                                        [--peer-repeat N] [--tmpdir DIR] [--json PATH]
                                        [--disk-dir DIR] [--loop-repeat N]

Cases and targets (exit status 1 if one is missed, 2 if simctl is not importable):
  create    10,000-member all_perm ensemble (100 x 100), all members
            materialised, >= 100x faster than the peer
  lazy      1,000,000 members (1000 x 1000 all_perm) expanded lazily via
            ens.iter_params() in < 2 s with < 100 MB extra peak RSS
            (fresh subprocess); baseline: raw itertools.product, ratio printed
  random    1,000 random members drawn from a 10^12 space (4 x 1000 values)
            in < 50 ms; baseline: random.sample over range(10**12)
  generate  generate the 10,000-member ensemble with one configured file,
            >= 4x faster than the peer
  genloop   generate 5,000 members with one configured file vs a plain Python
            loop doing os.mkdir + writing the same file per member, side by
            side (alternating, --loop-repeat pairs) on a real disk
            (--disk-dir, default /var/tmp) and on tmpfs (/dev/shm), ignoring
            --tmpdir: median simctl <= 1.5x the loop's median on the disk
            (tmpfs informational)
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    MB,
    Report,
    bench_arg_parser,
    fmt_mb,
    fmt_ratio,
    fmt_seconds,
    import_simctl,
    measure_in_subprocess,
    run_cases,
    time_call,
)

CASES = ["create", "lazy", "random", "generate", "genloop"]

N_A = N_B = 100                       # 10,000 members
LAZY_N = 1000                         # 1000 x 1000 = 1,000,000 members
RANDOM_DIMS, RANDOM_VALUES = 4, 1000  # 1000**4 = 10**12 combinations
RANDOM_DRAWS = 1000
CONFIG_TEXT = "A = ;a;\nB = ;b;\n"

TARGET_CREATE_RATIO = 100
TARGET_LAZY_SECONDS = 2.0
TARGET_LAZY_EXTRA_BYTES = 100 * MB
TARGET_RANDOM_SECONDS = 0.050
TARGET_GENERATE_RATIO = 4
LOOP_N = 5000                         # members in the genloop case (50 x 100)
TARGET_LOOP_FACTOR = 1.5


# --------------------------------------------------------------------------- simctl side


def _new_experiment(exp_path: str):
    from simctl import Experiment

    return Experiment("bench", exp_path=exp_path, launcher="local")


class _Tmp:
    """Fresh temp dir + Experiment + RunSettings(exe='true'), built untimed."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="simctl-bench-")
        self.exp = _new_experiment(self.dir)
        self.rs = self.exp.create_run_settings(exe="true")

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def simctl_create(repeat: int = 3) -> dict[str, Any]:
    params = {"a": list(range(N_A)), "b": list(range(N_B))}
    counts = []

    def op(t: _Tmp) -> None:
        ens = t.exp.create_ensemble("ens", params=params, run_settings=t.rs,
                                    perm_strategy="all_perm")
        members = [m for m in ens]  # materialise every Model, as the peer does
        counts.append((len(members), len(ens)))

    seconds = time_call(op, _Tmp, repeat=repeat, budget=10, teardown=_Tmp.cleanup)
    return {"seconds": seconds, "members": counts[-1][0], "len": counts[-1][1]}


# The lazy case runs in a spawned subprocess: setup/op must be module level.
def _lazy_setup() -> Any:
    import_simctl()
    t = _Tmp()
    # Warm-up: load the strategy plugin etc. before the measurement starts.
    warm = t.exp.create_ensemble("warm", params={"a": [0], "b": [0]}, run_settings=t.rs,
                                 perm_strategy="all_perm")
    for _ in warm.iter_params():
        pass
    values = list(range(LAZY_N))
    return t, {"a": values, "b": list(values)}


def _lazy_teardown(state: Any) -> None:
    state[0].cleanup()


def _lazy_op(state: Any) -> dict[str, Any]:
    t, params = state
    ens = t.exp.create_ensemble("big", params=params, run_settings=t.rs,
                                perm_strategy="all_perm")
    n = 0
    last = None
    for p in ens.iter_params():
        n += 1
        last = p
    return {"count": n, "len": len(ens), "last": dict(last) if last is not None else None}


def _product_setup() -> Any:
    values = list(range(LAZY_N))
    return values, list(values)


def _product_op(state: Any) -> int:
    a, b = state
    n = 0
    for _ in itertools.product(a, b):
        n += 1
    return n


def _random_params() -> dict[str, list]:
    return {f"p{i}": list(range(RANDOM_VALUES)) for i in range(RANDOM_DIMS)}


def simctl_random_draw(t: Any, params: dict[str, list]) -> list:
    ens = t.exp.create_ensemble("big", params=params, run_settings=t.rs,
                                perm_strategy="random", n_models=RANDOM_DRAWS, seed=0)
    return [m for m in ens]


def _member_params(member: Any) -> tuple:
    params = getattr(member, "params", None)
    if isinstance(params, dict):
        return tuple(sorted((k, str(v)) for k, v in params.items()))
    return (repr(member),)


def simctl_generate() -> dict[str, Any]:
    t = _Tmp()
    try:
        src = os.path.join(t.dir, "inputs")
        os.mkdir(src)
        cfg = os.path.join(src, "in.txt")
        with open(cfg, "w") as fh:
            fh.write(CONFIG_TEXT)
        exp_path = os.path.join(t.dir, "exp")
        os.mkdir(exp_path)
        exp = _new_experiment(exp_path)
        rs = exp.create_run_settings(exe="true")
        ens = exp.create_ensemble("ens", params={"a": list(range(N_A)), "b": list(range(N_B))},
                                  run_settings=rs, perm_strategy="all_perm")
        ens.attach_generator_files(to_configure=[cfg])
        seconds = time_call(lambda _: exp.generate(ens, overwrite=True))

        # Verify: one directory per member, last member's file configured.
        ens_dir = os.path.join(exp_path, "ens")
        member_dirs = (sum(1 for e in os.scandir(ens_dir) if e.is_dir())
                       if os.path.isdir(ens_dir) else 0)
        members = [m for m in ens]
        last = members[-1]
        configured_ok = None
        path = getattr(last, "path", None)
        params = getattr(last, "params", None)
        if path and isinstance(params, dict):
            with open(os.path.join(str(path), "in.txt")) as fh:
                configured_ok = fh.read() == f"A = {params['a']}\nB = {params['b']}\n"
            if not member_dirs:
                member_dirs = sum(1 for m in members if os.path.isdir(str(m.path)))
        return {"seconds": seconds, "member_dirs": member_dirs, "configured_ok": configured_ok}
    finally:
        t.cleanup()


def generate_floor() -> float:
    """Filesystem floor for `generate`: os.mkdir one directory per member and
    write its configured file with raw os calls, nothing else."""
    tmp = tempfile.mkdtemp(prefix="simctl-bench-floor-")
    try:
        texts = [f"A = {a}\nB = {b}\n".encode() for a in range(N_A) for b in range(N_B)]
        t0 = time.perf_counter()
        ens_dir = os.path.join(tmp, "ens")
        os.mkdir(ens_dir)
        for i, text in enumerate(texts):
            member = os.path.join(ens_dir, f"ens_{i}")
            os.mkdir(member)
            fd = os.open(os.path.join(member, "in.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, text)
            os.close(fd)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def loop_generate(root: str, n: int = LOOP_N) -> float:
    """The plain loop genloop compares with: the ensemble's directory, then per
    member os.mkdir and its configured file written with raw os calls."""
    texts = [f"A = {i // N_B}\nB = {i % N_B}\n".encode() for i in range(n)]
    t0 = time.perf_counter()
    ens_dir = os.path.join(root, "ens")
    os.mkdir(ens_dir)
    for i, text in enumerate(texts):
        member = os.path.join(ens_dir, f"ens_{i}")
        os.mkdir(member)
        fd = os.open(os.path.join(member, "in.txt"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, text)
        os.close(fd)
    return time.perf_counter() - t0


def simctl_generate_into(root: str, n: int = LOOP_N) -> float:
    """simctl's side of genloop: exp.generate of an n-member ensemble with one
    configured file (members made untimed, as the loop's texts are); checks the
    output and returns the seconds."""
    cfg = os.path.join(root, "in.txt")
    with open(cfg, "w") as fh:
        fh.write(CONFIG_TEXT)
    exp = _new_experiment(os.path.join(root, "exp"))
    rs = exp.create_run_settings(exe="true")
    ens = exp.create_ensemble("ens", params={"a": list(range(n // N_B)), "b": list(range(N_B))},
                              run_settings=rs, perm_strategy="all_perm")
    ens.attach_generator_files(to_configure=[cfg])
    members = ens.models
    t0 = time.perf_counter()
    exp.generate(ens)
    seconds = time.perf_counter() - t0
    last = members[-1]
    with open(os.path.join(str(last.path), "in.txt")) as fh:
        if fh.read() != f"A = {last.params['a']}\nB = {last.params['b']}\n":
            raise RuntimeError(f"{last.path}/in.txt is not configured as expected")
    ens_dir = os.path.dirname(str(last.path))
    if sum(1 for e in os.scandir(ens_dir) if e.is_dir()) != n:
        raise RuntimeError(f"expected {n} member directories in {ens_dir}")
    return seconds


def fs_type(path: str) -> str:
    """The file system type holding ``path`` (from /proc/mounts), or '?'."""
    path, best, kind = os.path.realpath(path), "", "?"
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                mnt, fstype = line.split()[1:3]
                inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, kind = mnt, fstype
    except OSError:
        pass
    return kind


# --------------------------------------------------------------------------- cases


def case_create(rep: Report, args: Any, run_simctl: bool) -> None:
    name = "create 10k all_perm"
    peer = None
    if not args.skip_peer:
        from peer import run_peer

        try:
            peer = run_peer("create_ensemble", na=N_A, nb=N_B, repeat=args.peer_repeat)
        except Exception as exc:  # noqa: BLE001
            rep.exception(f"{name} (peer)", exc)
    if not run_simctl:
        if peer:
            rep.peer_only(name, peer["seconds"], f"{peer['members']} members, "
                          f"peer cpu {fmt_seconds(peer.get('cpu_seconds'))}", peer=peer)
        return
    try:
        ours = simctl_create()
    except Exception as exc:  # noqa: BLE001
        rep.exception(name, exc)
        return
    rep.check(f"{name} members", ours["members"] == N_A * N_B == ours["len"],
              f"{ours['members']} materialised, len(ens) = {ours['len']}")
    if peer:
        rep.speedup(name, ours["seconds"], peer["seconds"], TARGET_CREATE_RATIO, peer=peer)
    else:
        rep.info(name, f"simctl {fmt_seconds(ours['seconds'])} (peer skipped)")


def case_lazy(rep: Report, args: Any, run_simctl: bool) -> None:
    name = "expand 1M lazily"
    base = measure_in_subprocess(_product_op, _product_setup)
    if not run_simctl:
        rep.info(f"{name} baseline", f"itertools.product {fmt_seconds(base['seconds'])}, "
                 f"extra peak RSS {fmt_mb(base['extra_peak_rss_bytes'])} (simctl not measured)")
        return
    try:
        ours = measure_in_subprocess(_lazy_op, _lazy_setup, teardown=_lazy_teardown)
    except Exception as exc:  # noqa: BLE001
        rep.exception(name, exc)
        return
    res = ours["result"]
    rep.check(f"{name} count", res["count"] == LAZY_N * LAZY_N == res["len"],
              f"iter_params() yielded {res['count']:,}, len(ens) = {res['len']:,}")
    factor = ours["seconds"] / base["seconds"] if base["seconds"] > 0 else float("inf")
    rep.below(name, ours["seconds"], TARGET_LAZY_SECONDS,
              extra=f"baseline itertools.product {fmt_seconds(base['seconds'])} "
                    f"(simctl/baseline {fmt_ratio(factor)})",
              baseline_s=base["seconds"], factor=factor)
    rep.below(f"{name} memory", ours["extra_peak_rss_bytes"], TARGET_LAZY_EXTRA_BYTES,
              fmt=fmt_mb, label="simctl extra peak RSS",
              extra=f"baseline {fmt_mb(base['extra_peak_rss_bytes'])}; {ours['method']}")


def case_random(rep: Report, args: Any, run_simctl: bool) -> None:
    name = "random 1k of 1e12"
    params = _random_params()
    space = 1
    for v in params.values():
        space *= len(v)
    assert space == 10 ** 12

    def base_op(_: Any) -> None:
        random.Random(0).sample(range(space), RANDOM_DRAWS)

    base_op(None)  # warm-up
    base = time_call(base_op, repeat=7)
    if not run_simctl:
        rep.info(f"{name} baseline", f"random.sample {fmt_seconds(base)} (simctl not measured)")
        return
    try:
        t = _Tmp()
        try:
            first = simctl_random_draw(t, params)  # warm-up (imports, plugin loading)
        finally:
            t.cleanup()
        drawn: dict[str, Any] = {}

        def op(t: _Tmp) -> None:
            drawn["members"] = simctl_random_draw(t, params)

        ours = time_call(op, _Tmp, repeat=7, teardown=_Tmp.cleanup)
    except Exception as exc:  # noqa: BLE001
        rep.exception(name, exc)
        return
    members = drawn["members"]
    keys = [_member_params(m) for m in members]
    rep.check(f"{name} draws", len(members) == RANDOM_DRAWS and len(set(keys)) == len(keys),
              f"{len(members)} members, {len(set(keys))} distinct")
    if [_member_params(m) for m in first] != keys:
        rep.warn(f"{name} seed", "two draws with seed=0 differ")
    factor = ours / base if base > 0 else float("inf")
    rep.below(name, ours, TARGET_RANDOM_SECONDS,
              extra=f"baseline random.sample {fmt_seconds(base)} (simctl/baseline {fmt_ratio(factor)})",
              baseline_s=base, factor=factor)


def case_generate(rep: Report, args: Any, run_simctl: bool) -> None:
    name = "generate 10k configured"
    peer = None
    if not args.skip_peer:
        from peer import run_peer

        try:
            peer = run_peer("generate", na=N_A, nb=N_B, repeat=args.peer_repeat)
            if peer.get("member_dirs") != N_A * N_B or not peer.get("configured_ok"):
                rep.warn(f"{name} (peer)", f"peer output unexpected: {peer}")
        except Exception as exc:  # noqa: BLE001
            rep.exception(f"{name} (peer)", exc)
    floor = generate_floor()
    floor_note = f"raw os.mkdir + write of {N_A * N_B:,} files {fmt_seconds(floor)}"
    if peer:
        floor_note += f" (peer/floor {fmt_ratio(peer['seconds'] / floor)})"
    rep.info(f"{name} floor", floor_note + " (informational)", floor_s=floor)
    if not run_simctl:
        if peer:
            rep.peer_only(name, peer["seconds"], f"{peer['member_dirs']} member dirs, "
                          f"peer cpu {fmt_seconds(peer.get('cpu_seconds'))}", peer=peer)
        return
    try:
        ours = simctl_generate()
    except Exception as exc:  # noqa: BLE001
        rep.exception(name, exc)
        return
    rep.check(f"{name} output", ours["member_dirs"] == N_A * N_B and ours["configured_ok"] is not False,
              f"{ours['member_dirs']} member dirs, configured file "
              f"{'ok' if ours['configured_ok'] else 'unchecked' if ours['configured_ok'] is None else 'WRONG'}")
    if peer:
        rep.speedup(name, ours["seconds"], peer["seconds"], TARGET_GENERATE_RATIO, peer=peer)
    else:
        rep.info(name, f"simctl {fmt_seconds(ours['seconds'])} (peer skipped)")


def case_genloop(rep: Report, args: Any, run_simctl: bool) -> None:
    """simctl vs the plain loop, in pairs (order alternating, each pair's outputs
    kept until all pairs ran: on ext4, deleting many inodes slows the next
    creations, so no run cleans up before another)."""
    if not run_simctl:
        rep.skip("genloop", "simctl not measured")
        return
    for where in (args.disk_dir, "/dev/shm"):
        kind = fs_type(where)
        name = f"generate {LOOP_N:,} vs plain loop ({kind}, {where})"
        if not (os.path.isdir(where) and os.access(where, os.W_OK)):
            rep.skip(name, f"{where} is not a writable directory")
            continue
        base = tempfile.mkdtemp(prefix="simctl-bench-genloop-", dir=where)
        ours, loop, ratios = [], [], []
        try:
            for i in range(max(1, args.loop_repeat)):
                pair: dict[str, float] = {}
                for side in ("loop", "simctl") if i % 2 == 0 else ("simctl", "loop"):
                    root = tempfile.mkdtemp(dir=base)
                    pair[side] = loop_generate(root) if side == "loop" else simctl_generate_into(root)
                ours.append(pair["simctl"])
                loop.append(pair["loop"])
                ratios.append(pair["simctl"] / pair["loop"])
                print(f"  {kind} pair {i + 1}: simctl {fmt_seconds(pair['simctl'])}, "
                      f"loop {fmt_seconds(pair['loop'])}", flush=True)
        except Exception as exc:  # noqa: BLE001
            rep.exception(name, exc)
            continue
        finally:
            shutil.rmtree(base, ignore_errors=True)
        spread = (f"{len(ours)} pairs: simctl {fmt_seconds(min(ours))}-{fmt_seconds(max(ours))}, loop "
                  f"{fmt_seconds(min(loop))}-{fmt_seconds(max(loop))}, simctl/loop per pair "
                  f"{fmt_ratio(min(ratios))}-{fmt_ratio(max(ratios))} (median {fmt_ratio(median(ratios))})")
        if kind == "tmpfs":
            rep.info(name, f"simctl {fmt_seconds(median(ours))} | loop {fmt_seconds(median(loop))} "
                     f"(medians; informational) | {spread}", simctl_runs=ours, loop_runs=loop)
        else:
            rep.slowdown(name, median(ours), median(loop), TARGET_LOOP_FACTOR, "loop",
                         simctl_runs=ours, loop_runs=loop)
            rep.info(f"{name} spread", spread)


CASE_FUNCS = {"create": case_create, "lazy": case_lazy, "random": case_random,
              "generate": case_generate, "genloop": case_genloop}


def main() -> int:
    parser = bench_arg_parser(__doc__.splitlines()[0], CASES)
    parser.add_argument("--disk-dir", default="/var/tmp", metavar="DIR",
                        help="genloop: a directory on a real disk (default /var/tmp)")
    parser.add_argument("--loop-repeat", type=int, default=5, metavar="N",
                        help="genloop: pairs of runs per file system (default 5)")
    return run_cases("bench_ensemble", parser.parse_args(), CASES, CASE_FUNCS)


if __name__ == "__main__":
    sys.exit(main())
