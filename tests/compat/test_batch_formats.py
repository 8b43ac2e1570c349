"""Batch settings' flags as SmartSim's ``format_batch_args`` shows them, per
scheduler (qsub, bsub, sbatch), over each launcher's own batch settings; and
jsrun MPMD's ERF settings by SmartSim's names."""

from __future__ import annotations

from smartsim.settings import (
    BsubBatchSettings,
    JsrunSettings,
    QsubBatchSettings,
    SbatchSettings,
    create_batch_settings,
)


def test_qsub_flags_as_smartsim_shows_them():
    bs = create_batch_settings("pbs", nodes=1, time="10:00:00", queue="default", account="proj", ncpus=10)
    assert bs.format_batch_args() == ["-l nodes=1:ncpus=10", "-l walltime=10:00:00", "-q default", "-A proj"]
    sel = QsubBatchSettings(resources={"select": 3, "place": "scatter"}, batch_args={"k": "oe"})
    assert sel.format_batch_args() == ["-l select=3", "-l place=scatter", "-k oe"]
    hosts = QsubBatchSettings()
    hosts.set_hostlist(["n1", "n2"])
    assert hosts.format_batch_args() == ["-l nodes=2:host=n1+host=n2"]


def test_bsub_flags_with_smts_and_project():
    bs = BsubBatchSettings(nodes=1, time="10:00:00", project="A3123", smts=4, batch_args={"alloc_flags": "nvme"})
    assert bs.account == "A3123"
    assert bs.format_batch_args() == ['-alloc_flags "nvme smt4"', "-nnodes 1"]
    bs.set_hostlist(["h1", "h2"])
    bs.set_tasks(5)
    bs.set_queue("q1")
    assert bs.format_batch_args() == ['-alloc_flags "nvme smt4"', "-nnodes 1", '-m "h1 h2"', "-n 5", "-q q1"]
    assert BsubBatchSettings(smts=2).format_batch_args() == ["-alloc_flags smt2"]


def test_sbatch_flags_keep_the_order_they_were_set_in():
    assert SbatchSettings(nodes=1, time="10:00:00", account="A1").format_batch_args() == [
        "--nodes=1", "--time=10:00:00", "--account=A1"]
    bs = SbatchSettings()
    bs.set_nodes(5)
    bs.set_account("A2")
    bs.set_walltime("10:00:00")
    bs.set_nodes(6)  # set again: keeps its place
    assert bs.format_batch_args() == ["--nodes=6", "--account=A2", "--time=10:00:00"]


def test_jsrun_erf_settings_by_smartsims_names():
    rs = JsrunSettings("python", run_args={"np": 100, "d": "packed", "immediate": None})
    sets = {"host": "1", "cpu": "{0:21}"}
    rs.set_erf_sets(sets)
    sets["host"] = "9"
    assert rs.erf_sets == {"host": "1", "cpu": "{0:21}"}
    rs.set_mpmd_preamble(["launch_distribution : packed"])
    assert rs.mpmd_preamble_lines == ["launch_distribution : packed"]
    rs.make_mpmd(JsrunSettings("python"))
    assert rs.launch_args() == ["--immediate"]  # the ERF file holds the resources
