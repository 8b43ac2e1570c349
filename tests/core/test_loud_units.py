"""Issue 17's pieces that need no process: the failure report, the status
table's durations and a store's normal stop, the experiment found from a
directory inside it, progress per entity, Ctrl-C's one line."""

from __future__ import annotations

import io
import sys

from simctl.core import logs, manifest as mf
from simctl.core.errors import interrupted, quiet_interrupt
from simctl.core.progress import progress_ticker
from simctl.core.status import Status
from simctl.core.table import duration, render_table


def _rec(name: str, status: Status, **kw) -> mf.JobRecord:
    return mf.JobRecord(name=name, entity_type="Model", job_id="1", run=1, launcher="local", status=status,
                        launched_at=100.0, finished_at=101.5, **kw)


def test_the_failure_report_names_the_error_log_and_quotes_its_last_lines(tmp_path):
    err = tmp_path / "m.err"
    err.write_text("".join(f"line {i}\n" for i in range(30)))
    silent = _rec("quiet", Status.FAILED, returncode=2, path=str(tmp_path))
    text = logs.failure_report([_rec("m", Status.FAILED, returncode=1, err=str(err)), silent], 5)
    lines = text.splitlines()
    assert lines[0] == "2 of 5 job(s) failed:"
    assert lines[1:3] == ["  m: exited with code 1", f"    log: {err}"]
    assert lines[3:13] == [f"    | line {i}" for i in range(20, 30)]  # the last TAIL_LINES lines
    assert f"    log: {tmp_path / 'quiet.err'} (empty)" in lines  # an older record: <path>/<name>.err
    assert logs.failure_report([], 3) == ""


def test_durations_have_units_and_a_stopped_store_is_not_a_failure():
    assert [duration(s) for s in (None, 0.421, 12.34, 187, 7500)] == ["-", "0.42s", "12.3s", "3m07s", "2h05m"]
    store = _rec("db", Status.CANCELLED, until_stopped=True)
    killed = _rec("model", Status.CANCELLED)
    table = render_table([store, killed]).splitlines()
    assert table[2].split()[5] == "Stopped" and table[3].split()[5] == "Cancelled"
    assert table[2].split()[4] == "1.50s"


def test_the_experiment_is_found_from_a_directory_inside_it(tmp_path):
    deep = tmp_path / "exp" / "sweep" / "sweep_1" / "sub"
    deep.mkdir(parents=True)
    assert logs.find_experiment(str(deep)) is None
    (tmp_path / "exp" / mf.DIRNAME).mkdir()
    (tmp_path / "exp" / mf.DIRNAME / mf.FILENAME).write_text("{}")
    assert logs.find_experiment(str(deep)) == str(tmp_path / "exp")
    assert logs.find_experiment(str(tmp_path / "exp")) == str(tmp_path / "exp")


def test_logs_are_selected_by_key_name_or_entity():
    recs = [_rec("sweep_0", Status.COMPLETED, ensemble="sweep", key="sweep/sweep_0"),
            _rec("sweep_1", Status.FAILED, ensemble="sweep", key="sweep/sweep_1"), _rec("solo", Status.COMPLETED)]
    latest = {r.key or r.name: r for r in recs}
    assert [r.name for r in logs.select(latest, "sweep")] == ["sweep_0", "sweep_1"]
    assert [r.name for r in logs.select(latest, "sweep_1")] == ["sweep_1"]
    assert [r.name for r in logs.select(latest, "sweep/sweep_0")] == ["sweep_0"]
    assert logs.select(latest, "nope") == []


def test_progress_is_drawn_per_entity_with_its_failures_and_no_bar_for_a_store():
    from rich.console import Console

    out = io.StringIO()
    rows = [("Ensemble sweep", 9, 3, 9, False), ("Orchestrator db", 0, 0, 1, True), ("Model analysis", 0, 0, 1, False)]
    with progress_ticker(lambda: rows, enabled=True, console=Console(file=out, force_terminal=True, width=100)) as tick:
        tick(0, 0)
    text = out.getvalue()
    assert "Ensemble sweep" in text and "(3 failed)" in text and "9/9" in text and "Model analysis" in text
    assert "Orchestrator" not in text
    with progress_ticker(lambda: rows, enabled=False) as tick:  # not a terminal: nothing drawn
        tick(0, 0)


def test_an_uncaught_interrupt_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    quiet_interrupt()
    assert sys.excepthook is not sys.__excepthook__
    exc = interrupted("interrupted (Ctrl-C): stopped 2 job(s) start() was waiting for: a, b")
    assert type(exc) is KeyboardInterrupt  # Python still exits with the status of Ctrl-C
    sys.excepthook(type(exc), exc, None)
    assert capsys.readouterr().err == "simctl: interrupted (Ctrl-C): stopped 2 job(s) start() was waiting for: a, b\n"
    sys.excepthook(ValueError, ValueError("x"), None)  # any other exception goes to Python's hook, as before
    assert "ValueError: x" in capsys.readouterr().err
    plain = KeyboardInterrupt()
    sys.excepthook(KeyboardInterrupt, plain, None)  # a Ctrl-C simctl did not handle: as before
    assert "KeyboardInterrupt" in capsys.readouterr().err
