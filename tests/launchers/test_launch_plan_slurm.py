"""The launch plan on the real test Slurm (issue 7): a plugin's before_launch
change reaches a batch member's actual command; environments (secrets too)
go through files of mode 0600, never into the script or the preview; one
member of a batch job stops alone; a per-node command runs once per node
under ``srun -n 3``."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from slurm_helpers import (
    PY,
    py_settings,
    script,
    slurm_exp,
    wait_until,
)

import simctl
from simctl import Status

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


REPORT = """
    import json, os, sys
    print(json.dumps({"argv": sys.argv[1:], "HOOK": os.environ.get("HOOK"), "TOKEN": os.environ.get("TOKEN"),
                      "GONE": os.environ.get("GONE", "unset")}))
"""


class Adjust:
    """Changes every member's step: an argument, a variable, a secret, an unset."""

    @simctl.hookimpl
    def simctl_entity_before_launch(self, entity, step, experiment):
        step.argv.append(f"--hook-{entity.name}")
        step.env["HOOK"] = f"for {entity.name}"
        step.env["GONE"] = None
        step.secret_env["TOKEN"] = "s3cret-" + entity.name


def test_a_before_launch_change_reaches_each_batch_members_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GONE", "from the driver")
    exp = slurm_exp(tmp_path)
    exp.plugins.register(Adjust(), name="adjust")
    rs = py_settings(exp, script(tmp_path, REPORT))
    ens = exp.create_ensemble("ens", params={"x": [1, 2]}, params_as_args=["x"], run_settings=rs,
                              batch_settings=exp.create_batch_settings(nodes=1, time="00:05:00"))
    exp.generate(ens)
    preview = exp.preview(ens, show=False)
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED] * 2
    for m in ens:
        seen = json.loads((Path(m.path) / f"{m.name}.out").read_text())
        assert seen["argv"] == ["-x", str(m.params["x"]), f"--hook-{m.name}"]
        assert seen["HOOK"] == f"for {m.name}" and seen["TOKEN"] == f"s3cret-{m.name}" and seen["GONE"] == "unset"
    (jobdir,) = Path(ens.path).glob(".simctl-batch/ens-*")
    script_text = (jobdir / "job.sh").read_text()
    assert "s3cret" not in script_text and "s3cret" not in preview
    assert "TOKEN=***" in preview and "HOOK=" in preview and "--hook-ens_0" in preview
    for i in range(2):
        env_file = jobdir / f"{i}.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert f"export TOKEN=s3cret-ens_{i}" in env_file.read_text() and "unset GONE" in env_file.read_text()


GATED = """
    import os, sys, time
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.05)
"""


def test_stopping_one_member_of_a_batch_job_leaves_the_others_running(tmp_path):
    exp = slurm_exp(tmp_path)
    gate = tmp_path / "open"
    rs = py_settings(exp, script(tmp_path, GATED), str(gate))
    ens = exp.create_ensemble("ens", replicas=3, run_settings=rs,
                              batch_settings=exp.create_batch_settings(nodes=1, time="00:05:00"))
    exp.generate(ens)
    exp.start(ens, block=False)
    try:
        wait_until(lambda: exp.get_status(ens) == [Status.RUNNING] * 3, "the members to run")
        exp.stop(ens["ens_1"])
        wait_until(lambda: exp.get_status(ens)[1] is Status.CANCELLED, "the stopped member to be cancelled")
        assert exp.get_status(ens)[0] is Status.RUNNING and exp.get_status(ens)[2] is Status.RUNNING
    finally:
        gate.touch()
    exp.poll(interval=0.5, verbose=False)
    assert exp.get_status(ens) == [Status.COMPLETED, Status.CANCELLED, Status.COMPLETED]


from _script_helpers import PER_NODE_HELPER as HELPER  # noqa: E402

RANK = """
    import os, sys
    starts = [ln for ln in open(sys.argv[1]).read().splitlines() if ln.startswith("start")]
    print(os.environ["SLURM_LOCALID"], len(starts))
"""


def test_a_per_node_command_runs_once_under_three_ranks(tmp_path):
    helper, rank, log = script(tmp_path, HELPER, "helper.py"), script(tmp_path, RANK, "rank.py"), tmp_path / "h.log"

    class PerNode:
        @simctl.hookimpl
        def simctl_entity_before_launch(self, entity, step, experiment):
            step.per_node = [PY, helper, str(log)]

    exp = slurm_exp(tmp_path)
    exp.plugins.register(PerNode(), name="pernode")
    rs = py_settings(exp, rank, str(log))
    rs.set_tasks(3)
    model = exp.create_model("app", rs, batch_settings=exp.create_batch_settings(nodes=1, time="00:05:00"))
    exp.generate(model)
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED], exp.summary()
    out = sorted((Path(model.path) / "app.out").read_text().split("\n")[:-1])
    # three ranks (local ids 0-2), each saw the helper started (once) before it ran
    assert out == ["0 1", "1 1", "2 1"]
    lines = log.read_text().splitlines()
    assert len([ln for ln in lines if ln.startswith("start")]) == 1 and lines[-1] == "stopped"
    assert os.path.exists(model.path)


def test_a_cancelled_batch_job_is_no_longer_watched(tmp_path):
    exp = slurm_exp(tmp_path)
    rs = py_settings(exp, script(tmp_path, GATED), str(tmp_path / "never"))
    ens = exp.create_ensemble("ens", replicas=2, run_settings=rs,
                              batch_settings=exp.create_batch_settings(nodes=1, time="00:05:00"))
    exp.generate(ens)
    exp.start(ens, block=False)
    job = exp.controller.jobs["ens/ens_0"].record.job_id.split(":")[0]
    assert exp.launcher.watcher.watching() == [job]
    exp.stop(ens)
    assert exp.get_status(ens) == [Status.CANCELLED] * 2
    assert exp.launcher.watcher.watching() == []  # its directory is not listed every 0.2 s forever
