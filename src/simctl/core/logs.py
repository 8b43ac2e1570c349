"""Where a job's output went, and saying so: the last lines of a log, the
experiment around a directory (found as git finds its repository), each
run's output files, and the report of the jobs that failed.

Each run of a job keeps its own output: ``<name>.out`` and ``<name>.err``
are the latest run's; when a job is started again, the previous run's files
are renamed ``<name>.out.<run>`` and ``<name>.err.<run>`` (and its manifest
record points there), so nothing is overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from . import manifest as mf
from .status import Status

#: how many last lines of a failed job's log a report quotes
TAIL_LINES = 10


def tail(path: str | None, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a file ([] if there is none or it is unreadable)."""
    if not path:
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            return fh.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return []


def find_experiment(start: str | None = None) -> str | None:
    """The experiment directory holding ``start`` (default: the current
    directory): the nearest of it and its parents with a manifest, or None."""
    path = os.path.abspath(start or os.getcwd())
    while True:
        if os.path.lexists(mf.path_of(path)):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def out_path(rec: mf.JobRecord, err: bool = False) -> str | None:
    """The file holding a record's standard output (or error), as recorded;
    for a record of an older simctl, ``<path>/<name>.out``."""
    recorded = rec.err if err else rec.out
    if recorded:
        return recorded
    return os.path.join(rec.path, f"{rec.name}.{'err' if err else 'out'}") if rec.path else None


def is_stopped_store(rec: mf.JobRecord) -> bool:
    """A job that runs until stopped (a store) that was stopped: its normal end, shown as Stopped."""
    return rec.until_stopped and rec.status is Status.CANCELLED


def shown_status(rec: mf.JobRecord) -> str:
    """The status as tables show it: Stopped for a store's normal end."""
    return "Stopped" if is_stopped_store(rec) else str(rec.status)


def failure_report(failed: Sequence[mf.JobRecord], total: int, lines: int = TAIL_LINES, show: int = 5) -> str:
    """``N of M job(s) failed``, then for (the first ``show`` of) them: why,
    the path of its error log and that log's last lines (else its output's)."""
    if not failed:
        return ""
    out = [f"{len(failed)} of {total} job(s) failed:"]
    for rec in list(failed)[:show]:
        why = rec.reason or (f"exited with code {rec.returncode}" if rec.returncode is not None else "failed")
        out.append(f"  {rec.key or rec.name}: {why}")
        err, std = out_path(rec, err=True), out_path(rec)
        quoted, where = tail(err, lines), err
        if not quoted and tail(std, lines):
            quoted, where = tail(std, lines), std
        if where:
            out.append(f"    log: {where}" + ("" if quoted else " (empty)"))
        out += [f"    | {line}" for line in quoted]
    if len(failed) > show:
        out.append(f"  ... and {len(failed) - show} more (`simctl status --failed` lists them)")
    return "\n".join(out)


def select(latest: dict[str, mf.JobRecord], name: str | None) -> list[mf.JobRecord]:
    """The latest records ``name`` designates: a job's key or name, or an
    entity (an ensemble's members, a store's shards); all when None."""
    recs = list(latest.values())
    if name is None:
        return recs
    exact = [r for r in recs if (r.key or r.name) == name] or [r for r in recs if r.name == name]
    return exact or [r for r in recs if r.ensemble == name or (r.key or r.name).partition("/")[0] == name]


def read_logs(records: Sequence[mf.JobRecord], err: bool = False) -> str:
    """The output (or error output) of ``records``: one file's text as it is;
    several, each headed by ``==> <key>: <path> <==``."""
    parts = []
    for rec in records:
        path = out_path(rec, err)
        try:
            with open(path or "", encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError as exc:
            text = f"(no output: {exc.strerror or exc})\n"
        if len(records) > 1:
            text = f"==> {rec.key or rec.name}: {path} <==\n{text}"
        parts.append(text)
    return "\n".join(parts) if len(records) > 1 else "".join(parts)
