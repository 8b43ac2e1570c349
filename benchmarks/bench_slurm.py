"""Slurm-launcher benchmark (issue 4, "Speed"), on the test Slurm cluster.

    python benchmarks/bench_slurm.py [--members N] [--repeat R] [--only steps,array,batch]
                                     [--alloc-tasks T] [--no-overlap] [--json PATH]

Cases (each compared with a plain shell loop doing the same work in the same run):

  steps  N members launched as job steps inside ONE allocation: the driver runs
         under ``salloc -N1 -n<T> --overcommit`` and starts an ensemble of N
         models running ``true`` through srun (no batch settings, so each is an
         srun step of the allocation) -- against
         ``for i in 1..N: srun -n1 true & done; wait`` in the same allocation.
         Both use ``srun --overlap`` unless --no-overlap (then both ``--exact``,
         simctl's default): with 100 steps on fewer free CPUs, both sides would
         otherwise mostly measure srun's own retry back-off while steps wait.
  array  N members as ONE job array (``--array=0-N-1``), each element running
         ``true`` -- against ``for i in 1..N: sbatch --wrap true; done`` and
         then ``squeue -h -j <ids>`` every 0.1 s until it lists none.
  batch  N members as ONE batch job (members run in the background of one
         script; ``--ntasks=1`` since ``true`` needs no CPU of its own) -- against
         the same shell loop of N sbatch.

Each timed simctl run is ``exp.start(ens, block=True)`` (entity creation and
generation untimed); each shell loop is timed from its first command to the end
of its wait. Ratio = shell / simctl (above 1: simctl is faster). Scheduler
commands are counted with the recording wrappers of ``tests/cmd_recorder``
put first on PATH (they log argv and exec the real command): "cmds/member" is
every sbatch, squeue, scancel, sacct and scontrol call divided by N; srun calls
are the work itself (one per member on both sides in ``steps``) and are listed
separately.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RECORDER = REPO / "tests" / "cmd_recorder"
STATUS_CMDS = ("sbatch", "squeue", "scancel", "sacct", "scontrol")


# --------------------------------------------------------------------------- helpers


def read_log(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            if line:
                counts[line.split("\t", 1)[0]] += 1
    return counts


def recorded_env(log: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{RECORDER}{os.pathsep}{env.get('PATH', '')}"
    env["SIMCTL_CMD_LOG"] = str(log)
    return env


def with_recorder(log: Path):
    """Context: recording wrappers first on PATH in this process, logging to ``log``."""

    class _Ctx:
        def __enter__(self) -> Path:
            self.saved = {k: os.environ.get(k) for k in ("PATH", "SIMCTL_CMD_LOG")}
            os.environ.update({k: v for k, v in recorded_env(log).items() if k in self.saved})
            return log

        def __exit__(self, *exc: Any) -> None:
            for k, v in self.saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return _Ctx()


def cmds_per_member(counts: Counter[str], n: int) -> float:
    return sum(counts[c] for c in STATUS_CMDS) / n


def fmt_counts(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def line(name: str, ours: float, shell: float, ours_cmds: float, shell_cmds: float, extra: str = "") -> str:
    ratio = shell / ours if ours > 0 else float("inf")
    return (f"{name}: simctl {ours:.2f} s | shell loop {shell:.2f} s | ratio {ratio:.2f}x | "
            f"{ours_cmds:.2f} cmds/member (shell loop {shell_cmds:.2f})" + (f" | {extra}" if extra else ""))


# --------------------------------------------------------------------------- steps (inside salloc)


def inner_steps(n: int, overlap: bool, workdir: Path, repeat: int) -> dict[str, Any]:
    """Runs inside the allocation: time the shell loop and simctl, alternately."""
    from simctl import Experiment, Status

    assert os.environ.get("SLURM_JOB_ID"), "inner_steps must run inside an allocation"
    flag = "--overlap " if overlap else "--exact "  # what simctl's srun gets either way
    script = f"for i in $(seq {n}); do srun {flag}-n1 true & done; wait"
    results: dict[str, list[float]] = {"simctl": [], "shell": []}
    counts: dict[str, Counter[str]] = {}
    for r in range(repeat):
        log = workdir / f"steps-shell-{r}.log"
        t0 = time.perf_counter()
        proc = subprocess.run(["bash", "-c", script], env=recorded_env(log), capture_output=True, text=True)
        results["shell"].append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"shell loop failed: {proc.stderr[-2000:]}")
        counts["shell"] = read_log(log)

        log = workdir / f"steps-simctl-{r}.log"
        with with_recorder(log):
            exp = Experiment(f"steps{r}", exp_path=str(workdir / f"steps{r}"), launcher="slurm")
            rs = exp.create_run_settings(exe="true", run_args={"overlap": None} if overlap else None)
            rs.set_tasks(1)
            ens = exp.create_ensemble("m", replicas=n, run_settings=rs)
            exp.generate(ens)
            t0 = time.perf_counter()
            exp.start(ens, block=True)
            results["simctl"].append(time.perf_counter() - t0)
            statuses = exp.get_status(ens)
            exp.launcher.close()
        if statuses != [Status.COMPLETED] * n:
            raise RuntimeError(f"simctl steps did not all complete: {Counter(map(str, statuses))}")
        counts["simctl"] = read_log(log)
    return {"simctl": min(results["simctl"]), "shell": min(results["shell"]),
            "simctl_counts": dict(counts["simctl"]), "shell_counts": dict(counts["shell"])}


def run_steps(n: int, alloc_tasks: int, overlap: bool, workdir: Path, repeat: int) -> str:
    out = workdir / "steps.json"
    argv = ["salloc", "-N1", f"-n{alloc_tasks}", "--overcommit", "-t", "00:30:00", "-J", "bench-steps",
            sys.executable, str(Path(__file__).resolve()), "--inner-steps", str(out), "--members", str(n),
            "--repeat", str(repeat)] + ([] if overlap else ["--no-overlap"])
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"salloc driver failed ({proc.returncode}): {proc.stderr[-3000:]}")
    res = json.loads(out.read_text())
    sc, hc = Counter(res["simctl_counts"]), Counter(res["shell_counts"])
    return line(f"slurm steps x{n}", res["simctl"], res["shell"], cmds_per_member(sc, n),
                cmds_per_member(hc, n),
                f"srun/member simctl {sc['srun'] / n:.2f}, shell {hc['srun'] / n:.2f}"
                f"{'' if overlap else ' (no --overlap)'}")


# --------------------------------------------------------------------------- array / batch (outside)


def shell_sbatch_loop(n: int, workdir: Path, log: Path) -> float:
    script = f"""
set -e
cd {str(workdir)!r}
ids=()
for i in $(seq {n}); do ids+=("$(sbatch --parsable -J bench-loop -o /dev/null -e /dev/null --wrap true)"); done
list=$(IFS=,; echo "${{ids[*]}}")
while [ -n "$(squeue -h -j "$list" -o %i)" ]; do sleep 0.1; done
"""
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "-c", script], env=recorded_env(log), capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"shell sbatch loop failed: {proc.stderr[-2000:]}")
    return took


def simctl_batch(n: int, array: bool, workdir: Path, log: Path, tag: str) -> float:
    from simctl import Experiment, Status

    with with_recorder(log):
        exp = Experiment(tag, exp_path=str(workdir / tag), launcher="slurm")
        bs = exp.create_batch_settings(time="00:10:00", array=array,
                                       batch_args=None if array else {"ntasks": 1})
        rs = exp.create_run_settings(exe="true", run_command=None)
        ens = exp.create_ensemble("m", replicas=n, run_settings=rs, batch_settings=bs)
        exp.generate(ens)
        t0 = time.perf_counter()
        exp.start(ens, block=True)
        took = time.perf_counter() - t0
        statuses = exp.get_status(ens)
        exp.launcher.close()
    if statuses != [Status.COMPLETED] * n:
        raise RuntimeError(f"simctl {tag} did not all complete: {Counter(map(str, statuses))}")
    return took


def run_batch(n: int, workdir: Path, repeat: int, cases: list[str]) -> list[str]:
    times: dict[str, list[float]] = {"shell": [], "array": [], "batch": []}
    counts: dict[str, Counter[str]] = {}
    for r in range(repeat):
        log = workdir / f"shell-{r}.log"
        times["shell"].append(shell_sbatch_loop(n, workdir, log))
        counts["shell"] = read_log(log)
        for case in ("array", "batch"):
            if case in cases:
                log = workdir / f"{case}-{r}.log"
                times[case].append(simctl_batch(n, case == "array", workdir, log, f"{case}{r}"))
                counts[case] = read_log(log)
    shell = min(times["shell"])
    shell_cmds = cmds_per_member(counts["shell"], n)
    out = []
    for case, label in (("array", "job array"), ("batch", "one batch job")):
        if case in cases:
            out.append(line(f"slurm {label} x{n}", min(times[case]), shell, cmds_per_member(counts[case], n),
                            shell_cmds, f"simctl: {fmt_counts(counts[case])}; "
                            f"shell loop: {fmt_counts(counts['shell'])}"))
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--members", type=int, default=100)
    p.add_argument("--repeat", type=int, default=1, help="runs per side; the fastest counts (default 1)")
    p.add_argument("--only", default="steps,array,batch")
    p.add_argument("--alloc-tasks", type=int, default=100, help="tasks of the salloc allocation for steps")
    p.add_argument("--no-overlap", action="store_true", help="steps without srun --overlap")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--inner-steps", metavar="OUT", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.inner_steps:
        out = Path(args.inner_steps)
        res = inner_steps(args.members, not args.no_overlap, out.parent, args.repeat)
        out.write_text(json.dumps(res))
        return 0

    cases = [c.strip() for c in args.only.split(",") if c.strip()]
    if shutil.which("sinfo") is None or subprocess.run(["sinfo"], capture_output=True).returncode != 0:
        print("Slurm is not up: run `bash scripts/setup-slurm.sh` first", file=sys.stderr)
        return 2
    print(f"== simctl Slurm benchmark: {args.members} members, repeat {args.repeat} ==", flush=True)
    busy = subprocess.run(["squeue", "-h", "-t", "R,PD", "-o", "%C"], capture_output=True, text=True).stdout.split()
    print(f"cluster: {sum(map(int, busy))} CPU(s) in use by {len(busy)} other job(s) at start", flush=True)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-slurm-", dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        if "steps" in cases:
            lines.append(run_steps(args.members, args.alloc_tasks, not args.no_overlap, work, args.repeat))
            print(lines[-1], flush=True)
        if {"array", "batch"} & set(cases):
            for ln in run_batch(args.members, work, args.repeat, cases):
                lines.append(ln)
                print(ln, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"lines": lines}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
