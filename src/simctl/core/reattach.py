"""After the driver is gone: find out what its jobs really did, and stop what
it left running, from what the manifest recorded (``JobRecord.handle``: a pid
and its start time, a scheduler job id and its job directory).

Every record names the driver that launched it (several drivers may share an
experiment); every run of every job not recorded as finished whose driver is
gone is looked at, not only the latest run of each job. ``simctl status
EXP_PATH`` uses :func:`refresh`; ``simctl stop EXP_PATH`` uses
:func:`stop_left`, which refuses while a driver with unfinished jobs runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from typing import Any

from . import driver as drv, manifest as mf
from .errors import ConfigError, SimctlError
from .plugins import Plugins
from .status import JobStatus, Status


def driver_of(man: mf.Manifest, rec: mf.JobRecord) -> dict[str, Any]:
    """The driver that launched ``rec`` (the manifest's for a record of an older simctl)."""
    return rec.driver or man.driver


def driver_alive(man: mf.Manifest) -> bool:
    """Whether a driver of ``man`` still runs: the last one that wrote it,
    or one whose jobs are not finished."""
    return drv.alive(man.driver) or bool(live_drivers(man))


def live_drivers(man: mf.Manifest) -> dict[tuple[Any, ...], tuple[dict[str, Any], list[mf.JobRecord]]]:
    """The drivers still running that have jobs not finished, with those jobs."""
    out: dict[tuple[Any, ...], tuple[dict[str, Any], list[mf.JobRecord]]] = {}
    dead: set[tuple[Any, ...]] = set()
    for r in _open(man):
        d = driver_of(man, r)
        key = (d.get("pid"), d.get("create_time"), d.get("host"))
        if key in dead:
            continue
        if key not in out:
            if not drv.alive(d):
                dead.add(key)
                continue
            out[key] = (d, [])
        out[key][1].append(r)
    return out


def _open(man: mf.Manifest) -> list[mf.JobRecord]:
    """Every run not recorded as finished (not only the latest run of each job:
    a driver killed earlier may have left an older run going)."""
    return [r for r in man.jobs if not r.status.is_terminal and r.job_id]


def _apply(rec: mf.JobRecord, st: JobStatus) -> None:
    rec.status, rec.returncode, rec.reason = st.status, st.returncode, st.reason
    if (st.status.is_terminal or st.final) and rec.finished_at is None:
        rec.finished_at = time.time()


def _rounds(records: list[mf.JobRecord]) -> list[list[mf.JobRecord]]:
    """``records`` in rounds in which no launcher sees one job id twice (two
    drivers' local launchers both number their jobs from 1): each round is
    looked at by fresh launchers."""
    rounds: list[tuple[set[tuple[str, str | None]], list[mf.JobRecord]]] = []
    for r in records:
        ident = (r.launcher, r.job_id)
        for seen, recs in rounds:
            if ident not in seen:
                seen.add(ident)
                recs.append(r)
                break
        else:
            rounds.append(({ident}, [r]))
    return [recs for _, recs in rounds]


def _look(records: list[mf.JobRecord], plugins: Plugins, stop: bool) -> None:
    """Find each of ``records`` (unique job ids per launcher) again and record
    its status, stopping it first with ``stop``."""
    for name in sorted({r.launcher for r in records}):
        launcher = plugins.get("launcher", name)()
        mine = [r for r in records if r.launcher == name]
        found = [r for r in mine if r.handle and launcher.adopt(r.job_id, r.handle)]
        for r in mine:
            if r not in found:
                _apply(r, JobStatus(Status.UNKNOWN, None, "its driver died and left nothing to find it by",
                                    final=True))
        if not found:
            launcher.close()
            continue
        ids = [r.job_id for r in found]
        try:
            result = launcher.stop(ids) if stop else launcher.status(ids)
        except SimctlError as exc:
            for r in found:
                r.reason = f"status unknown: {exc}"
            continue
        finally:
            launcher.close()
        for r in found:
            st = result.get(r.job_id)
            if st is not None:
                if stop and st.status is Status.CANCELLED:
                    st = JobStatus(st.status, st.returncode, "stopped by `simctl stop` after its driver died")
                _apply(r, st)


def _visit(exp_path: str, plugins: Plugins, stop: bool, keys: Collection[str] | None = None) -> mf.Manifest:
    with mf.locked(exp_path):
        got = mf.read(exp_path)
        if got is None:
            raise ConfigError(f"no simctl experiment at {exp_path} (no {mf.path_of(exp_path)})")
        man, position = got
        live = live_drivers(man)
        if stop and live:
            said = "; ".join(f"{drv.describe(d)} runs {', '.join(r.key or r.name for r in recs[:5])}"
                             f"{' ...' if len(recs) > 5 else ''}" for d, recs in live.values())
            raise ConfigError(f"a driver of {exp_path} still runs ({said}): stop its jobs there (exp.stop(), "
                              "Ctrl-C) or end it; it stops them as it exits")
        theirs = {id(r) for _, recs in live.values() for r in recs}
        records = [r for r in _open(man) if id(r) not in theirs  # every run left by a driver that is gone
                   and (keys is None or r.key in keys)]
        if not records:
            return man
        for batch in _rounds(records):
            _look(batch, plugins, stop)
        # only the records looked at are written (appended to the journal): the cost of what changed
        mf.Writer(exp_path, position).save(man.header(), mf.encode(records), hold_lock=False)
        return man


def experiment_of(path: str) -> str | None:
    """The experiment directory whose manifest records what runs from ``path``: the nearest one above it."""
    here = os.path.abspath(path)
    while True:
        here, last = os.path.dirname(here), here
        if here == last:
            return None
        if os.path.exists(mf.path_of(here)):
            return here


def refresh(exp_path: str, plugins: Plugins, keys: Collection[str] | None = None) -> mf.Manifest:
    """The manifest, with the truth about jobs its dead driver left unfinished
    (only those of ``keys`` if given) written into it (nothing changes while the driver runs)."""
    return _visit(exp_path, plugins, stop=False, keys=keys)


def stop_left(exp_path: str, plugins: Plugins, keys: Collection[str] | None = None) -> mf.Manifest:
    """Stop every job a dead driver left running (only those of ``keys`` if
    given); refuse while the driver runs."""
    return _visit(exp_path, plugins, stop=True, keys=keys)
