"""After the driver is gone: find out what its jobs really did, and stop what
it left running, from what the manifest recorded (``JobRecord.handle``: a pid
and its start time, a scheduler job id and its job directory).

``simctl status EXP_PATH`` uses :func:`refresh` when the driver that wrote the
manifest no longer runs; ``simctl stop EXP_PATH`` uses :func:`stop_left`.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from . import manifest as mf
from .errors import ConfigError, SimctlError
from .plugins import Plugins
from .status import JobStatus, Status


def driver_alive(man: mf.Manifest) -> bool:
    """Whether the driver that wrote ``man`` still runs (same pid, same start time)."""
    pid, started = man.driver.get("pid"), man.driver.get("create_time")
    if not isinstance(pid, int):
        return False
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and (started is None or abs(p.create_time() - started) < 0.01)
    except psutil.Error:
        return False


def _open(man: mf.Manifest) -> list[mf.JobRecord]:
    return [r for r in man.latest().values() if not r.status.is_terminal and r.job_id]


def _apply(rec: mf.JobRecord, st: JobStatus) -> None:
    rec.status, rec.returncode, rec.reason = st.status, st.returncode, st.reason
    if (st.status.is_terminal or st.final) and rec.finished_at is None:
        rec.finished_at = time.time()


def _launchers(records: list[mf.JobRecord], plugins: Plugins) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in {r.launcher for r in records}:
        out[name] = plugins.get("launcher", name)()
    return out


def _visit(exp_path: str, plugins: Plugins, stop: bool) -> mf.Manifest:
    with mf.locked(exp_path):
        got = mf.read(exp_path)
        if got is None:
            raise ConfigError(f"no simctl experiment at {exp_path} (no {mf.path_of(exp_path)})")
        man, position = got
        if driver_alive(man):
            if stop:
                raise ConfigError(f"the driver of {exp_path} (pid {man.driver['pid']}) still runs: stop its jobs "
                                  "there (exp.stop(), Ctrl-C) or end it; it stops them as it exits")
            return man
        records = _open(man)
        if not records:
            return man
        launchers = _launchers(records, plugins)
        for name, launcher in launchers.items():
            mine = [r for r in records if r.launcher == name]
            found = [r for r in mine if r.handle and launcher.adopt(r.job_id, r.handle)]
            for r in mine:
                if r not in found:
                    _apply(r, JobStatus(Status.UNKNOWN, None, "its driver died and left nothing to find it by",
                                        final=True))
            if not found:
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
        # only the records looked at are written (appended to the journal): the cost of what changed
        mf.Writer(exp_path, position).save(man.header(), mf.encode(records), hold_lock=False)
        return man


def refresh(exp_path: str, plugins: Plugins) -> mf.Manifest:
    """The manifest, with the truth about jobs its dead driver left unfinished
    written into it (nothing changes while the driver runs)."""
    return _visit(exp_path, plugins, stop=False)


def stop_left(exp_path: str, plugins: Plugins) -> mf.Manifest:
    """Stop every job a dead driver left running; refuse while the driver runs."""
    return _visit(exp_path, plugins, stop=True)
