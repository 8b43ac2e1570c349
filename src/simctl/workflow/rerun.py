"""``simctl rerun EXP_PATH --failed``: start again, from the manifest alone
(the driver is gone), the jobs whose latest run ended without completing.

Each job is made again as a model from what its last run recorded: its
command (``argv``), run directory (``path``) and own environment (``env``;
secret variables such as a store's password are never recorded), on the
launcher it ran on, with that launcher's default run settings. It runs as
the next run of the same job (same key), so ``simctl status`` shows it in
place of the failed one, and the failed run's output files are kept as
``<name>.out.<run>``."""

from __future__ import annotations

import os
import sys

from ..core import manifest as mf
from ..core.errors import ConfigError, JobsFailed
from ..core.plugins import Plugins
from ..core.reattach import driver_alive
from ..core.status import Status
from .experiment import Experiment


def failed_records(man: mf.Manifest) -> list[mf.JobRecord]:
    """The latest records of the jobs that ended without completing (not stores)."""
    return [r for r in mf.latest_records(man.jobs)
            if r.status.is_terminal and r.status is not Status.COMPLETED and not r.until_stopped]


def rerun_failed(exp_path: str, plugins: Plugins) -> int:
    """Re-run the failed jobs of the experiment at ``exp_path`` and wait for
    them; 0 if all completed, 1 otherwise (each failure reported on stderr)."""
    man = mf.load(exp_path)
    if man is None:
        raise ConfigError(f"no simctl experiment at {exp_path} (no {mf.path_of(exp_path)})")
    if driver_alive(man):
        raise ConfigError(f"a driver of {exp_path} still runs; re-run from it "
                          "(exp.start(entity, only='failed')) or wait until it ends")
    todo = failed_records(man)
    if not todo:
        print(f"nothing to re-run: every job of {man.experiment} at {man.exp_path} completed", file=sys.stderr)
        return 0
    missing = [r.key or r.name for r in todo if not r.argv or not r.path or not os.path.isdir(r.path)]
    if missing:
        raise ConfigError(f"cannot re-run {', '.join(missing[:5])}: the manifest does not record its command "
                          "and run directory (written by an older simctl?); re-run it from a driver")
    exp = Experiment(man.experiment, man.exp_path, launcher=todo[0].launcher, plugins=plugins)
    models = []
    for rec in todo:
        rs = exp.create_run_settings(rec.argv[0], rec.argv[1:], env_vars=rec.env)
        model = exp.create_model(rec.name, rs, path=rec.path)
        model.ensemble = rec.ensemble
        models.append(model)
    print(f"re-running {len(models)} job(s): {', '.join(m.key for m in models)}", file=sys.stderr, flush=True)
    with exp:
        try:
            exp.start(*models, raise_on_failure=True)
        except JobsFailed as exc:
            print(exc, file=sys.stderr, flush=True)
        statuses = exp.get_status(*models)
    done = sum(s is Status.COMPLETED for s in statuses)
    print(f"{done} of {len(models)} re-run job(s) completed", file=sys.stderr, flush=True)
    return 0 if done == len(models) else 1
