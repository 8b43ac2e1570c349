"""A stand-in for IBM Spectrum LSF's bsub, bjobs and bkill (see README.md).

It is NOT LSF: it runs each submitted job script as a local background
process and keeps the jobs' state in the directory named by
$SIMCTL_LSF_STANDIN_STATE. What it prints, and its exit codes, follow the
recorded real LSF output in tests/data/lsf/ (SOURCES.md there says where each
came from).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATE_ENV = "SIMCTL_LSF_STANDIN_STATE"
#: comma-separated command names (bsub, bjobs, bkill) that print garbage instead of their output
GARBAGE_ENV = "SIMCTL_LSF_STANDIN_GARBAGE"
#: comma-separated queue names that exist (default: normal)
QUEUES_ENV = "SIMCTL_LSF_STANDIN_QUEUES"
DEFAULT_QUEUE = "normal"
HERE = Path(__file__).resolve().parent
FINISHED = ("DONE", "EXIT")
#: bsub options that take a value (the ones the stand-in understands, and common others it ignores)
VALUE_OPTS = {"-J", "-o", "-e", "-oo", "-eo", "-W", "-q", "-P", "-n", "-nnodes", "-m", "-R", "-cwd", "-app",
              "-G", "-g", "-L", "-u", "-M", "-w", "-E", "-Ep", "-alloc_flags", "-gpu", "-sla", "-i", "-We"}
FLAG_OPTS = {"-K", "-I", "-Is", "-x", "-N", "-B", "-r", "-rn", "-H", "-env"}


# -- state ---------------------------------------------------------------------------------

def state_dir() -> Path:
    root = os.environ.get(STATE_ENV)
    if not root:
        sys.stderr.write(f"LSF stand-in: set ${STATE_ENV} to a directory for its job state\n")
        sys.exit(255)
    path = Path(root)
    (path / "jobs").mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked() -> Iterator[None]:
    with open(state_dir() / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def job_path(job_id: str) -> Path:
    return state_dir() / "jobs" / f"{job_id}.json"


def load(job_id: str) -> dict[str, Any] | None:
    try:
        return json.loads(job_path(job_id).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def save(job: dict[str, Any]) -> None:
    path = job_path(job["id"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    os.replace(tmp, path)


def garbage(command: str) -> bool:
    if command in os.environ.get(GARBAGE_ENV, "").split(","):
        print("LSF stand-in garbage: <<this is not what bjobs prints>> %%%")
        return True
    return False


def user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


# -- bsub ----------------------------------------------------------------------------------

def _directives(script: str) -> list[str]:
    """The #BSUB lines before the first command, as bsub reads them."""
    args: list[str] = []
    for line in script.splitlines():
        s = line.strip()
        if not s or (s.startswith("#") and not s.startswith("#BSUB")):
            continue
        if s.startswith("#BSUB"):
            args += shlex.split(s[len("#BSUB"):])
            continue
        break
    return args


def _parse_opts(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    opts: dict[str, Any] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a in VALUE_OPTS:
            if i + 1 >= len(args):
                raise SystemExit(f"{a}: option requires an argument. Job not submitted.")
            opts[a] = args[i + 1]
            i += 2
        elif a in FLAG_OPTS:
            opts[a] = True
            i += 1
        elif a.startswith("-"):
            raise SystemExit(f"{a}: Illegal option. Job not submitted.")
        else:
            return opts, args[i:]
    return opts, []


def _indices(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+)(?::(\d+))?)?\s*", part)
        if not m:
            raise SystemExit("Bad job name. Job not submitted.")
        start, end, step = int(m.group(1)), int(m.group(2) or m.group(1)), int(m.group(3) or 1)
        out += list(range(start, end + 1, step))
    return out


def bsub(argv: list[str]) -> int:
    if garbage("bsub"):
        return 0
    try:
        cli, command = _parse_opts(argv)
        script = sys.stdin.read() if not command else "#!/bin/sh\n" + shlex.join(command) + "\n"
        opts, _ = _parse_opts(_directives(script)) if not command else ({}, [])
    except SystemExit as exc:
        sys.stderr.write(f"{exc}\n")
        return 255
    opts.update(cli)  # the command line overrides the script's #BSUB lines
    queues = os.environ.get(QUEUES_ENV, DEFAULT_QUEUE).split(",")
    queue = opts.get("-q", DEFAULT_QUEUE)
    if queue not in queues:
        sys.stderr.write("No such queue. Job not submitted\n")
        return 255
    name = opts.get("-J", command[0] if command else "sh")
    indices = [0]
    m = re.fullmatch(r"(.*)\[([^\]]+)\](%\d+)?", name)
    if m:
        try:
            indices = _indices(m.group(2))
        except SystemExit as exc:
            sys.stderr.write(f"{exc}\n")
            return 255
        name = m.group(1)
    with locked():
        counter = state_dir() / "next_id"
        job_id = str(int(counter.read_text()) if counter.exists() else 1001)
        counter.write_text(str(int(job_id) + 1))
        spool = state_dir() / "jobs" / f"{job_id}.sh"
        spool.write_text(script)
        job = {"id": job_id, "name": name, "array": bool(m), "queue": queue, "user": user(),
               "submit_time": time.strftime("%b %d %H:%M"), "cwd": opts.get("-cwd", os.getcwd()),
               "script": str(spool), "out": opts.get("-o") or opts.get("-oo"), "err": opts.get("-e") or opts.get("-eo"),
               "elements": {str(i): {"stat": "PEND", "exit_code": None, "exit_reason": None, "pgid": None}
                            for i in indices}}
        save(job)
    for i in indices:
        subprocess.Popen([sys.executable, str(HERE / "_standin.py"), "run", job_id, str(i)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)
    where = f"queue <{queue}>" if "-q" in opts else f"default queue <{queue}>"
    print(f"Job <{job_id}> is submitted to {where}.")
    return 0


def run(job_id: str, index: str) -> int:
    """The stand-in's execution host: run one element of a job."""
    with locked():
        job = load(job_id)
        if job is None or job["elements"][index]["stat"] != "PEND":
            return 0  # killed before it started, or vanished
        env = dict(os.environ, LSB_JOBID=job_id, LSB_JOBINDEX=index, LSB_JOBNAME=job["name"])

        def expand(path: str) -> str:  # bsub's %J (job id) and %I (array index) in file names
            return path.replace("%J", job_id).replace("%I", index)

        out_path = expand(job["out"]) if job["out"] else str(state_dir() / "jobs" / f"{job_id}.{index}.out")
        err_path = expand(job["err"]) if job["err"] else out_path
        out = open(out_path, "a")
        err = out if err_path == out_path else open(err_path, "a")
        proc = subprocess.Popen(["/bin/bash", job["script"]], cwd=job["cwd"], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
        job["elements"][index].update(stat="RUN", pgid=proc.pid)
        save(job)
    rc = proc.wait()
    code = 128 - rc if rc < 0 else rc  # killed by signal N: LSF reports 128 + N
    with locked():
        job = load(job_id)
        if job is None:
            return 0  # it vanished from LSF while it ran
        element = job["elements"][index]
        element["stat"] = "DONE" if code == 0 else "EXIT"
        element["exit_code"] = None if code == 0 else code
        if element.pop("kill_requested", False) and code != 0:
            element["exit_reason"] = "TERM_OWNER: job killed by owner"
        save(job)
    return 0


# -- bjobs ---------------------------------------------------------------------------------

FIELDS = ("jobid", "jobindex", "stat", "user", "queue", "job_name", "exit_code", "exit_reason", "from_host",
          "exec_host", "submit_time")


def _rows(job: dict[str, Any], only: str | None) -> list[dict[str, str]]:
    rows = []
    for index, el in job["elements"].items():
        if only is not None and only != index:
            continue
        rows.append({
            "jobid": job["id"], "jobindex": index, "stat": el["stat"], "user": job["user"], "queue": job["queue"],
            "job_name": f"{job['name']}[{index}]" if job["array"] else job["name"],
            "exit_code": "-" if el["exit_code"] is None else str(el["exit_code"]),
            "exit_reason": el["exit_reason"] or "-", "from_host": "localhost",
            "exec_host": "localhost" if el["stat"] != "PEND" else "", "submit_time": job["submit_time"]})
    return rows


def bjobs(argv: list[str]) -> int:
    if garbage("bjobs"):
        return 0
    show_all, header, fmt, ids = False, True, None, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-a":
            show_all = True
        elif a == "-noheader":
            header = False
        elif a == "-o":
            fmt = argv[i + 1]
            i += 1
        elif a == "-w":
            pass
        elif a.startswith("-"):
            sys.stderr.write(f"{a}: Illegal option.\n")
            return 255
        else:
            ids.append(a)
        i += 1
    delimiter, fields = " ", None
    if fmt is not None:
        fields = []
        for token in fmt.split():
            m = re.fullmatch(r"delimiter=['\"](.)['\"]", token)
            if m:
                delimiter = m.group(1)
            else:
                name = token.split(":")[0].lower()
                if name not in FIELDS:
                    sys.stderr.write(f"{name}: Illegal job field name. (stand-in knows {', '.join(FIELDS)})\n")
                    return 255
                fields.append(name)
    rows, missing = [], []
    with locked():
        if ids:
            for raw in ids:
                m = re.fullmatch(r"(\d+)(?:\[(\d+)\])?", raw)
                job = load(m.group(1)) if m else None
                if job is None or (m and m.group(2) and m.group(2) not in job["elements"]):
                    missing.append(raw)
                    continue
                rows += _rows(job, m.group(2) if m else None)
        else:
            for path in sorted((state_dir() / "jobs").glob("*.json"), key=lambda p: int(p.stem)):
                job = load(path.stem)
                if job:
                    rows += [r for r in _rows(job, None) if show_all or r["stat"] not in FINISHED]
    if fields is not None:
        if header and rows:
            print(delimiter.join(f.upper() for f in fields))
        for r in rows:
            print(delimiter.join(r[f] or "-" for f in fields))
    elif rows:
        if header:
            print(f"{'JOBID':<7} {'USER':<7} {'STAT':<5} {'QUEUE':<10} {'FROM_HOST':<11} {'EXEC_HOST':<11} "
                  f"{'JOB_NAME':<10} SUBMIT_TIME")
        for r in rows:
            print(f"{r['jobid']:<7} {r['user']:<7} {r['stat']:<5} {r['queue']:<10} {r['from_host']:<11} "
                  f"{r['exec_host']:<11} {r['job_name']:<10} {r['submit_time']}")
    elif not ids:
        print("No job found" if show_all else "No unfinished job found")
    for raw in missing:
        sys.stderr.write(f"Job <{raw}> is not found\n")
    # observed on real LSF (SOURCES.md): 255 when some ids are unknown, 0 when all of them are
    return 255 if missing and rows else 0


# -- bkill ---------------------------------------------------------------------------------

def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def bkill(argv: list[str]) -> int:
    if garbage("bkill"):
        return 0
    rc = 0
    ids = [a for a in argv if not a.startswith("-")]
    for raw in ids:
        m = re.fullmatch(r"(\d+)(?:\[(\d+)\])?", raw)
        with locked():
            job = load(m.group(1)) if m else None
            targets = {k: v for k, v in (job or {}).get("elements", {}).items()
                       if not (m and m.group(2)) or k == m.group(2)}
            if job is None or not targets:
                sys.stderr.write(f"Job <{raw}>: No matching job found\n")
                rc = 255
                continue
            active = {k: v for k, v in targets.items() if v["stat"] not in FINISHED}
            if not active:
                sys.stderr.write(f"Job <{raw}>: Job has already finished\n")
                rc = 255
                continue
            pgids = []
            for el in active.values():
                if el["stat"] == "PEND":  # never started: it exits at once
                    el.update(stat="EXIT", exit_reason="TERM_OWNER: job killed by owner")
                else:
                    el["kill_requested"] = True
                    pgids.append(el["pgid"])
            save(job)
        # like LSF: SIGINT, then SIGTERM, then SIGKILL (the interval is 10 s in LSF, short here)
        for sig in (signal.SIGINT, signal.SIGTERM):
            for pgid in pgids:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, sig)
        deadline = time.monotonic() + 1.0
        while any(_alive(p) for p in pgids) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        print(f"Job <{raw}> is being terminated")
    return rc


COMMANDS = {"bsub": bsub, "bjobs": bjobs, "bkill": bkill}

if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        sys.exit(run(sys.argv[2], sys.argv[3]))
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
