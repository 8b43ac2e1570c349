"""The README's main job (examples/quickstart) runs end to end: a store, a
sweep whose members store their results in it, an analysis model reading
them all back and running a network on each in the store, the store stopped,
nothing left running."""

from __future__ import annotations

import subprocess

import psutil
from _lifecycle_helpers import PY
from _paths import REPO

EXAMPLE = REPO / "examples" / "quickstart" / "experiment.py"


def test_the_quick_start_exchanges_tensors_through_its_store(tmp_path):
    res = subprocess.run([PY, str(EXAMPLE), str(tmp_path / "qs")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = [ln.split() for ln in res.stdout.splitlines() if ln.startswith("sweep_") and len(ln.split()) == 7]
    # every member's profile was read back from the store by the analysis model
    assert [r[0] for r in rows] == [f"sweep_{i}" for i in range(6)]
    assert {(r[1], r[2]) for r in rows} == {(a, s) for a in ("0.1", "0.2", "0.4") for s in ("50", "200")}
    assert all(float(r[3]) > 0 and int(r[4]) > 1 for r in rows)
    # the network run in the store on each profile: the heat put in (100) is kept, but for what the cold ends
    # took; the steepest slope of a smooth bump is below its peak
    assert all(99.9 < float(r[5]) <= 100.0005 and 0 < float(r[6]) < float(r[3]) for r in rows), rows
    assert "Orchestrator" in res.stdout and "Stopped" in res.stdout  # the store was stopped (its normal end)
    assert "free_port" not in EXAMPLE.read_text()  # create_database() picks a free port itself
    assert not [p for p in psutil.process_iter(["cmdline"])
                if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
