"""The experiment lifecycle of issue 3: start (blocking or not), poll,
finished, get_status, summary, preview, statuses, outputs and the
environment a model's process receives. Real processes throughout."""

from __future__ import annotations

import logging
import os
import time

import pytest
from _lifecycle_helpers import (
    PY,
    code_settings,
    load_manifest,
    make_exp,
    recorder_of,
    wait_until,
    write_script,
)

import simctl
from simctl import Status
from simctl.core import manifest as mf

# -- start / block / poll / finished / get_status ---------------------------------------------


def test_start_block_true_waits_until_the_model_finished(tmp_path):
    exp = make_exp(tmp_path)
    marker = tmp_path / "done.txt"
    rs = code_settings(exp, f"import time; time.sleep(0.5); open({str(marker)!r}, 'w').write('ok')")
    model = exp.create_model("waiter", rs, path=str(tmp_path))
    exp.start(model, block=True)
    # block=True returned only after the process wrote its file and exited
    assert marker.read_text() == "ok"
    assert exp.get_status(model) == [Status.COMPLETED]
    assert exp.finished(model)


def test_start_block_false_returns_at_once_then_poll_and_finished(tmp_path):
    exp = make_exp(tmp_path)
    gate = tmp_path / "gate"
    # the child runs until the test opens the gate, so start() cannot have waited for it
    rs = code_settings(exp, f"""
        import os, time
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.02)
    """)
    model = exp.create_model("gated", rs, path=str(tmp_path))
    exp.start(model, block=False)
    assert not exp.finished(model)
    wait_until(lambda: exp.get_status(model) == [Status.RUNNING], "the model to be RUNNING")
    assert not exp.finished(model)
    gate.write_text("")
    exp.poll(interval=0.2, verbose=False)
    assert exp.finished(model)
    assert exp.get_status(model) == [Status.COMPLETED]


def test_poll_verbose_prints_running_count(tmp_path, capsys):
    exp = make_exp(tmp_path)
    rs = code_settings(exp, "import time; time.sleep(0.6)")
    model = exp.create_model("slowish", rs, path=str(tmp_path))
    exp.start(model, block=False)
    exp.poll(interval=0.1, verbose=True)  # printed on stderr, with no logging set up
    assert exp.get_status(model) == [Status.COMPLETED]
    err = capsys.readouterr().err
    assert "x: 1 of 1 job(s) running after" in err and "x: 1 job(s) finished: 1 without failing, 0 failed" in err


def test_get_status_of_an_ensemble_gives_each_member(tmp_path):
    exp = make_exp(tmp_path)
    rs = code_settings(exp, "import sys; sys.exit(0)")
    ens = exp.create_ensemble("ens", replicas=3, run_settings=rs, path=str(tmp_path))
    fails = exp.create_model("bad", code_settings(exp, "import sys; sys.exit(4)"), path=str(tmp_path))
    ens.add_model(fails)
    exp.start(ens, block=True)
    assert exp.get_status(ens) == [Status.COMPLETED] * 3 + [Status.FAILED]
    assert exp.get_status(ens[0], fails) == [Status.COMPLETED, Status.FAILED]
    assert exp.finished(ens)


def test_finished_of_an_entity_never_started_is_an_error(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("idle", exp.create_run_settings("true"), path=str(tmp_path))
    with pytest.raises(simctl.ConfigError, match="not started"):
        exp.finished(model)
    assert exp.get_status(model) == [Status.NEW]


def test_start_without_entities_is_an_error(tmp_path):
    exp = make_exp(tmp_path)
    with pytest.raises(simctl.ConfigError, match="at least one"):
        exp.start()
    with pytest.raises(simctl.ConfigError, match="expected a Model, an Ensemble"):
        exp.start("not an entity")


def test_summary_true_prints_what_is_launched_before_launching(tmp_path, capsys):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings("echo", exe_args=["summary-run", "42"])
    model = exp.create_model("summ", rs, path=str(tmp_path))
    exp.start(model, block=True, summary=True)
    out = capsys.readouterr().out
    assert "summ" in out
    assert "echo summary-run 42" in out
    assert (tmp_path / "summ.out").read_text() == "summary-run 42\n"


# -- summary and summary_data --------------------------------------------------------------------


def test_summary_table_and_data(tmp_path):
    exp = make_exp(tmp_path)
    ok = exp.create_model("ok", exp.create_run_settings("true"), path=str(tmp_path))
    bad = exp.create_model("bad", exp.create_run_settings("false"), path=str(tmp_path))
    exp.start(ok, bad, block=True)
    exp.start(ok, block=True)  # a second run of the same model

    data = exp.summary_data()
    assert [(r.name, r.run, r.status, r.returncode) for r in data] == [
        ("ok", 1, Status.COMPLETED, 0), ("bad", 1, Status.FAILED, 1), ("ok", 2, Status.COMPLETED, 0)]
    assert all(r.entity_type == "Model" and r.job_id and r.launcher == "local" for r in data)
    assert all(r.elapsed is not None and r.elapsed >= 0 for r in data)

    table = exp.summary().splitlines()
    header = table[0].split()
    for col in ("Name", "Entity-Type", "JobID", "RunID", "Time", "Status", "Returncode"):
        assert col in header
    end = table.index("")  # the table; then the failures' report
    body = [line.split() for line in table[2:end]]
    assert [(row[0], row[3], row[5], row[6]) for row in body] == [
        ("ok", "1", "Completed", "0"), ("bad", "1", "Failed", "1"), ("ok", "2", "Completed", "0")]
    assert all(row[4].endswith("s") for row in body)  # a duration with its unit
    assert table[end + 1] == "1 of 2 job(s) failed:" and "bad.err" in "\n".join(table[end:])


def test_summary_of_an_ensemble_names_the_ensemble(tmp_path):
    exp = make_exp(tmp_path)
    ens = exp.create_ensemble("sweep", params={"x": [1, 2]}, run_settings=exp.create_run_settings("true"),
                              path=str(tmp_path))
    exp.start(ens)
    data = exp.summary_data()
    assert [(r.name, r.ensemble) for r in data] == [("sweep_0", "sweep"), ("sweep_1", "sweep")]
    assert "sweep" in exp.summary().splitlines()[2]


# -- preview ---------------------------------------------------------------------------------------


def test_preview_prints_exact_commands_and_runs_nothing(tmp_path, capsys):
    exp = make_exp(tmp_path)
    marker = tmp_path / "ran"
    rs = exp.create_run_settings("touch", exe_args=[str(marker)])
    model = exp.create_model("prev", rs, path=str(tmp_path))
    ens = exp.create_ensemble("pens", params={"n": [1, 2]}, params_as_args=["n"],
                              run_settings=exp.create_run_settings("touch", exe_args=[str(marker)]),
                              path=str(tmp_path))
    text = exp.preview(model, ens)
    printed = capsys.readouterr().out
    assert printed.strip() == text.strip()
    assert f"touch {marker}" in text
    assert f"touch {marker} -n 1" in text and f"touch {marker} -n 2" in text
    assert str(tmp_path) in text  # where it would run
    time.sleep(0.3)
    assert not marker.exists()
    assert not list(tmp_path.glob("*.out")) and not list(tmp_path.glob("*.err"))
    assert exp.get_status(model, ens) == [Status.NEW] * 3
    # plugins' before_launch changes are part of what would run, so preview applies them too
    assert [name for name, _ in recorder_of(exp).before] == ["prev", "pens_0", "pens_1"]
    assert recorder_of(exp).changes == []
    assert mf.load(exp.exp_path) is None  # nothing launched, nothing recorded


# -- outputs -------------------------------------------------------------------------------------------


def test_out_and_err_files_in_the_working_directory(tmp_path):
    exp = make_exp(tmp_path)
    rs = code_settings(exp, "import sys; print('to out'); print('to err', file=sys.stderr)")
    model = exp.create_model("outs", rs, path=str(tmp_path))
    exp.start(model)
    assert (tmp_path / "outs.out").read_text() == "to out\n"
    assert (tmp_path / "outs.err").read_text() == "to err\n"


def test_generated_model_writes_outputs_in_its_directory(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("gen", exp.create_run_settings("pwd"))
    exp.generate(model)
    exp.start(model)
    gen_dir = os.path.join(exp.exp_path, "gen")
    assert open(os.path.join(gen_dir, "gen.out")).read().strip() == os.path.realpath(gen_dir)
    assert os.path.exists(os.path.join(gen_dir, "gen.err"))


def test_outputs_complete_when_the_process_is_killed(tmp_path):
    exp = make_exp(tmp_path, launcher_options={"stop_grace": 0.5})
    rs = code_settings(exp, """
        import sys, time
        for i in range(3):
            print('line', i, flush=True)
        print('problem', file=sys.stderr, flush=True)
        time.sleep(60)
    """)
    model = exp.create_model("killed", rs, path=str(tmp_path))
    exp.start(model, block=False)
    wait_until(lambda: "line 2" in (tmp_path / "killed.out").read_text(), "the child to print")
    exp.stop(model)
    assert exp.get_status(model) == [Status.CANCELLED]
    assert (tmp_path / "killed.out").read_text() == "line 0\nline 1\nline 2\n"
    assert (tmp_path / "killed.err").read_text() == "problem\n"


def test_rerun_replaces_previous_outputs(tmp_path):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings("echo", exe_args=["first"])
    model = exp.create_model("again", rs, path=str(tmp_path))
    exp.start(model)
    model.run_settings.exe_args = ["second"]
    exp.start(model)
    assert (tmp_path / "again.out").read_text() == "second\n"


# -- environment and arguments -------------------------------------------------------------------------------


def _env_dump(exp, names, **kw):
    return code_settings(exp, f"""
        import os
        for k in {list(names)!r}:
            print(k + '=' + os.environ.get(k, '<unset>'))
    """, **kw)


def test_run_settings_env_vars_are_applied(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMCTL_TEST_DROP", "inherited")
    monkeypatch.setenv("SIMCTL_TEST_KEEP", "inherited")
    exp = make_exp(tmp_path)
    rs = _env_dump(exp, ["SIMCTL_TEST_A", "SIMCTL_TEST_DROP", "SIMCTL_TEST_KEEP"],
                   env_vars={"SIMCTL_TEST_A": "one", "SIMCTL_TEST_DROP": None})
    rs.update_env({"SIMCTL_TEST_B": "two"})
    model = exp.create_model("envy", rs, path=str(tmp_path))
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED]
    assert (tmp_path / "envy.out").read_text().splitlines() == [
        "SIMCTL_TEST_A=one", "SIMCTL_TEST_DROP=<unset>", "SIMCTL_TEST_KEEP=inherited"]
    assert "SIMCTL_TEST_B" not in (tmp_path / "envy.out").read_text()  # not asked for; see next test


def test_update_env_reaches_the_process(tmp_path):
    exp = make_exp(tmp_path)
    rs = _env_dump(exp, ["SIMCTL_TEST_B"])
    rs.update_env({"SIMCTL_TEST_B": "two"})
    model = exp.create_model("envb", rs, path=str(tmp_path))
    exp.start(model)
    assert (tmp_path / "envb.out").read_text() == "SIMCTL_TEST_B=two\n"


def test_params_as_args_are_appended(tmp_path):
    exp = make_exp(tmp_path)
    rs = code_settings(exp, "import sys; print(sys.argv[1:])")
    ens = exp.create_ensemble("args", params={"steps": [10, 20], "t": [0.5], "unused": ["u"]},
                              params_as_args=["steps", "t"], run_settings=rs, path=str(tmp_path))
    model = exp.create_model("margs", code_settings(exp, "import sys; print(sys.argv[1:])"),
                             params={"alpha": 3}, params_as_args=["alpha"], path=str(tmp_path))
    exp.start(ens, model)
    # members run in <ensemble path>/<member> (SmartSim's place, issue 19)
    assert (tmp_path / "args_0" / "args_0.out").read_text() == "['--steps=10', '-t', '0.5']\n"
    assert (tmp_path / "args_1" / "args_1.out").read_text() == "['--steps=20', '-t', '0.5']\n"
    assert (tmp_path / "margs.out").read_text() == "['--alpha=3']\n"


def test_key_prefixing_and_incoming_entities_reach_the_environment(tmp_path):
    exp = make_exp(tmp_path)
    keys = ["SSKEYOUT", "SSKEYIN"]
    producers = exp.create_ensemble("producer", replicas=2, run_settings=_env_dump(exp, keys), path=str(tmp_path))
    assert producers.query_key_prefixing()  # members made from replicas prefix their keys (issue 19)
    consumer = exp.create_model("consumer", _env_dump(exp, keys), path=str(tmp_path))
    for m in producers:
        consumer.register_incoming_entity(m)
    plain = exp.create_model("plain", _env_dump(exp, keys), path=str(tmp_path))
    exp.start(producers, block=True)
    exp.start(consumer, plain, block=True)
    assert (tmp_path / "producer_0" / "producer_0.out").read_text() == "SSKEYOUT=producer_0\nSSKEYIN=<unset>\n"
    assert (tmp_path / "producer_1" / "producer_1.out").read_text() == "SSKEYOUT=producer_1\nSSKEYIN=<unset>\n"
    assert (tmp_path / "consumer.out").read_text() == "SSKEYOUT=<unset>\nSSKEYIN=producer_0,producer_1\n"
    assert (tmp_path / "plain.out").read_text() == "SSKEYOUT=<unset>\nSSKEYIN=<unset>\n"


def test_model_key_prefixing_switch(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("pref", _env_dump(exp, ["SSKEYOUT"]), path=str(tmp_path), enable_key_prefixing=True)
    exp.start(model)
    assert (tmp_path / "pref.out").read_text() == "SSKEYOUT=pref\n"
    model.disable_key_prefixing()
    exp.start(model)
    assert (tmp_path / "pref.out").read_text() == "SSKEYOUT=<unset>\n"


# -- where a model runs ---------------------------------------------------------------------------------------------


def test_model_without_path_or_generate_runs_in_the_current_directory(tmp_path, monkeypatch):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    exp = make_exp(tmp_path)
    model = exp.create_model("where", exp.create_run_settings("pwd"))
    exp.start(model)
    # its output files go to its path, <exp_path>/<name> from creation (as in SmartSim, issue 19)
    assert model.path == str(tmp_path / "x" / "where")
    assert (tmp_path / "x" / "where" / "where.out").read_text().strip() == os.path.realpath(here)
    assert (tmp_path / "x" / "where" / "where.err").exists() and not (here / "where.out").exists()


def test_standard_model_example_as_written(tmp_path, monkeypatch, python_on_path):
    """The Model guide's "Standard Model" instructions, with launcher="local",
    run without generate: example-model.out / .err appear where the driver runs."""
    monkeypatch.chdir(tmp_path)
    write_script(tmp_path / "script.py", """
        import sys
        print("hello from example-model")
        print("a warning", file=sys.stderr)
    """)
    from simctl import Experiment

    exp = Experiment(name="getting-started", launcher="local", plugins=simctl.make_plugins())
    settings = exp.create_run_settings(exe="python", exe_args="script.py")
    model = exp.create_model(name="example-model", run_settings=settings)
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED]
    # in the experiment's directory, <exp_path>/<name> (SmartSim's model.path, issue 19); the program ran
    # where the driver runs, so "script.py" was found
    where = tmp_path / "getting-started" / "example-model"
    assert (where / "example-model.out").read_text() == "hello from example-model\n"
    assert (where / "example-model.err").read_text() == "a warning\n"
    assert exp.exp_path == str(tmp_path / "getting-started")
    assert load_manifest(exp).jobs[0].name == "example-model"


def test_standard_model_example_with_generate_as_written(tmp_path, monkeypatch, python_on_path):
    """The same example including its ``model = exp.generate(model)`` line: start
    accepts what generate returned, and the model runs in its own directory."""
    monkeypatch.chdir(tmp_path)
    from simctl import Experiment

    exp = Experiment(name="getting-started", launcher="local", plugins=simctl.make_plugins())
    settings = exp.create_run_settings(exe="python", exe_args="script.py")
    model = exp.create_model(name="example-model", run_settings=settings)
    original = model
    model = exp.generate(model)
    gen_dir = tmp_path / "getting-started" / "example-model"
    assert model == [str(gen_dir)]  # the directories written
    # the isolated directory is where the script must be (the guide leaves copying it out)
    write_script(gen_dir / "script.py", "print('hello from the generated directory')")
    exp.start(model)
    assert exp.get_status(model) == exp.get_status(original) == [Status.COMPLETED]
    assert (gen_dir / "example-model.out").read_text() == "hello from the generated directory\n"
    assert (gen_dir / "example-model.err").exists()
    assert not (tmp_path / "example-model.out").exists()


# -- logging ----------------------------------------------------------------------------------------------------------


def test_get_logger_as_the_documents_use_it(capfd):
    from simctl.log import get_logger

    logger = get_logger("Experiment Log")
    assert isinstance(logger, logging.Logger)
    assert logger.name == "simctl.Experiment Log"
    assert get_logger("Experiment Log") is logger
    logger.info("summary goes here")
    err = capfd.readouterr().err
    assert "Experiment Log" in err and "summary goes here" in err and "INFO" in err


def test_get_logger_respects_log_level_env(tmp_path):
    import subprocess

    code = ("from simctl.log import get_logger; l = get_logger('x'); "
            "l.info('hidden-info'); l.warning('shown-warning')")
    res = subprocess.run([PY, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, SIMCTL_LOG_LEVEL="warning"), timeout=60)
    assert res.returncode == 0, res.stderr
    assert "shown-warning" in res.stderr and "hidden-info" not in res.stderr


# -- progress bar -----------------------------------------------------------------------------------------------------


def _run_in_terminal(tmp_path, code: str) -> tuple[int, str]:
    """Run a driver with its stdout on a pseudo-terminal; return (exit code, what the terminal got)."""
    import pty
    import subprocess

    driver = write_script(tmp_path / "tty_driver.py", code)
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="120", TERM="xterm")
    proc = subprocess.Popen([PY, str(driver)], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    proc.stderr.read()
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


PROGRESS_DRIVER = """
    import simctl
    exp = simctl.Experiment("bar", exp_path="exp", launcher="local")
    ens = exp.create_ensemble("b", replicas=3, run_settings=exp.create_run_settings("sleep", exe_args="0.3"))
    exp.start(ens, block=True)
    print("statuses:", [str(s) for s in exp.get_status(ens)])
"""


def test_progress_bar_when_output_is_a_terminal(tmp_path):
    rc, screen = _run_in_terminal(tmp_path, PROGRESS_DRIVER)
    assert rc == 0, screen
    assert "Ensemble b" in screen  # labelled by entity
    assert "3/3" in screen
    assert "statuses: ['Completed', 'Completed', 'Completed']" in screen


def test_no_progress_bar_when_output_is_not_a_terminal(tmp_path):
    from _lifecycle_helpers import run_driver

    res = run_driver(tmp_path, PROGRESS_DRIVER)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "statuses: ['Completed', 'Completed', 'Completed']\n"
