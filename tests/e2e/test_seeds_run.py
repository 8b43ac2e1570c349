"""The reference documents' examples, run as written with ``launcher="local"``.

The Ensemble guide's examples never call ``generate``, so their members run in
the current directory (as the Model guide says a model without a path does),
each writing ``<member>.out`` / ``.err`` there. Examples that need a batch
system (``create_batch_settings``) cannot run on ``local``; they are run here
without their batch settings, and the error for the batch settings is checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _lifecycle_helpers import write_script

import simctl
from simctl import Status

OUTPUT_MY_PARAMETER = """
    import json, os, time
    time.sleep(0.1)
    params = {}
    if os.path.exists("../simctl-params.json"):  # one record per ensemble: member name -> parameters
        params = json.load(open("../simctl-params.json")).get(os.path.basename(os.getcwd()), {})
    print(f"Hello, my name is {params.get('name', '?')} and my parameter is {params.get('parameter', '?')}")
"""


@pytest.fixture
def seed_dir(tmp_path, monkeypatch, python_on_path):
    """The driver's directory: holds output_my_parameter.py and is the cwd."""
    monkeypatch.chdir(tmp_path)
    write_script(tmp_path / "output_my_parameter.py", OUTPUT_MY_PARAMETER)
    return tmp_path


def _exp(name: str = "getting-started") -> simctl.Experiment:
    return simctl.Experiment(name, launcher="local", plugins=simctl.make_plugins())


def _all_completed(exp, ens, where):
    assert exp.get_status(ens) == [Status.COMPLETED] * len(ens)
    for m in ens:  # run where the driver runs (never generated), outputs in each member's path (issue 19)
        assert m.path.startswith(exp.exp_path) and not (where / f"{m.name}.out").exists()
        out = Path(m.path) / f"{m.name}.out"
        assert out.read_text().startswith("Hello, my name is"), out
        assert (Path(m.path) / f"{m.name}.err").read_text() == ""


def test_parameter_expansion_example_1_all_perm(seed_dir):
    exp = _exp()
    rs = exp.create_run_settings(exe="python", exe_args="output_my_parameter.py")
    params = {
        "name": ["Ellie", "John"],
        "parameter": [2, 11],
    }
    ensemble = exp.create_ensemble("ensemble", params=params, run_settings=rs, perm_strategy="all_perm")
    exp.start(ensemble)
    assert len(ensemble) == 4
    assert sorted((m.params["name"], m.params["parameter"]) for m in ensemble) == [
        ("Ellie", 2), ("Ellie", 11), ("John", 2), ("John", 11)]
    _all_completed(exp, ensemble, seed_dir)


def test_parameter_expansion_example_2_step_without_a_batch_system(seed_dir):
    exp = _exp()
    with pytest.raises(simctl.ConfigError, match="batch"):
        exp.create_batch_settings(nodes=2, time="10:00:00", batch_args={"distribution": "block", "exclusive": None})
    rs = exp.create_run_settings(exe="python", exe_args="output_my_parameter.py")
    rs.set_nodes(1)
    params = {
        "name": ["Ellie", "John"],
        "parameter": [2, 11],
    }
    ensemble = exp.create_ensemble("ensemble", params=params, run_settings=rs, perm_strategy="step")
    exp.start(ensemble)
    assert [(m.params["name"], m.params["parameter"]) for m in ensemble] == [("Ellie", 2), ("John", 11)]
    _all_completed(exp, ensemble, seed_dir)


def test_parameter_expansion_with_generate_gives_each_member_its_parameters(seed_dir):
    exp = _exp()
    rs = exp.create_run_settings(exe="python", exe_args="output_my_parameter.py")
    ensemble = exp.create_ensemble("ensemble", params={"name": ["Ellie", "John"], "parameter": [2, 11]},
                                   run_settings=rs, perm_strategy="all_perm")
    ensemble.attach_generator_files(to_copy=["output_my_parameter.py"])
    exp.generate(ensemble)
    exp.start(ensemble, block=True, summary=True)
    lines = sorted((seed_dir / "getting-started" / "ensemble" / m.name / f"{m.name}.out").read_text().strip()
                   for m in ensemble)
    assert lines == [
        "Hello, my name is Ellie and my parameter is 11", "Hello, my name is Ellie and my parameter is 2",
        "Hello, my name is John and my parameter is 11", "Hello, my name is John and my parameter is 2"]
    assert exp.get_status(ensemble) == [Status.COMPLETED] * 4


def test_replicas_example_1(seed_dir):
    exp = _exp()
    rs = exp.create_run_settings(exe="python", exe_args="output_my_parameter.py")
    ensemble = exp.create_ensemble("ensemble-replica", replicas=4, run_settings=rs)
    exp.start(ensemble)
    assert [m.name for m in ensemble] == [f"ensemble-replica_{i}" for i in range(4)]
    _all_completed(exp, ensemble, seed_dir)


def test_replicas_example_2_without_a_batch_system(seed_dir):
    exp = _exp()
    rs = exp.create_run_settings(exe="python", exe_args="output_my_parameter.py")
    rs.set_nodes(4)
    ensemble = exp.create_ensemble("ensemble-replica", replicas=4, run_settings=rs)
    exp.start(ensemble)
    _all_completed(exp, ensemble, seed_dir)


def test_manually_append_example(seed_dir):
    write_script(seed_dir / "script_1", "print('Hello, my name is script_1')")
    write_script(seed_dir / "script_2", "print('Hello, my name is script_2')")
    exp = _exp()
    exe = "python"
    ensemble = exp.create_ensemble("ensemble-append")
    srun_settings_1 = exp.create_run_settings(exe=exe, exe_args="script_1")
    srun_settings_2 = exp.create_run_settings(exe=exe, exe_args="script_2")
    model_1 = exp.create_model(name="model_1", run_settings=srun_settings_1)
    model_2 = exp.create_model(name="model_2", run_settings=srun_settings_2)
    ensemble.add_model(model_1)
    ensemble.add_model(model_2)
    exp.start(ensemble)
    _all_completed(exp, ensemble, seed_dir)
    assert (Path(model_2.path) / "model_2.out").read_text() == "Hello, my name is script_2\n"


def test_files_example_thermo_to_configure(seed_dir):
    (seed_dir / "configure_params.txt").write_text("THERMO = ;[10,11,12];\n")
    write_script(seed_dir / "application.py", """
        print(open("configure_params.txt").read().strip())
    """)
    from simctl.log import get_logger

    logger = get_logger("Experiment Log")
    exp = simctl.Experiment("getting-started", launcher="local", plugins=simctl.make_plugins())
    ensemble_settings = exp.create_run_settings(exe="python", exe_args=str(seed_dir / "application.py"))
    model = exp.create_ensemble("ensemble", run_settings=ensemble_settings, params={"THERMO"},
                                perm_strategy="all_perm")
    model.attach_generator_files(to_configure="configure_params.txt")
    exp.generate(model)
    exp.start(model)
    logger.info(exp.summary())
    assert len(model) == 3
    assert exp.get_status(model) == [Status.COMPLETED] * 3
    outs = sorted((seed_dir / "getting-started" / "ensemble" / m.name / f"{m.name}.out").read_text() for m in model)
    # each member ran in its own directory and read its own configured value
    assert [("10" in o, "11" in o, "12" in o) for o in outs] == [
        (True, False, False), (False, True, False), (False, False, True)]


def test_key_prefixing_example_without_the_database(seed_dir):
    """The Ensemble guide's producer/consumer driver, minus the feature store
    (a later issue): the prefixes reach each process's environment."""
    dump = "import os; print(os.environ.get('SSKEYOUT'), os.environ.get('SSKEYIN'))"
    write_script(seed_dir / "producer_script.py", dump)
    write_script(seed_dir / "consumer_script.py", dump)
    exe_ex = sys.executable
    exp = simctl.Experiment("getting-started", launcher="local", plugins=simctl.make_plugins())
    ensemble_settings = exp.create_run_settings(exe=exe_ex, exe_args="producer_script.py")
    producer_ensemble = exp.create_ensemble("producer", run_settings=ensemble_settings, replicas=2)
    producer_ensemble.enable_key_prefixing()
    model_settings = exp.create_run_settings(exe=exe_ex, exe_args="consumer_script.py")
    consumer_model = exp.create_model("consumer", model_settings)
    exp.start(producer_ensemble, block=True, summary=True)
    for model in producer_ensemble:
        consumer_model.register_incoming_entity(model)
    exp.start(consumer_model, block=True, summary=True)
    assert exp.get_status(producer_ensemble, consumer_model) == [Status.COMPLETED] * 3
    out = {m.name: (Path(m.path) / f"{m.name}.out").read_text() for m in (*producer_ensemble, consumer_model)}
    assert out == {"producer_0": "producer_0 None\n", "producer_1": "producer_1 None\n",
                   "consumer": "None producer_0,producer_1\n"}
    summary = exp.summary()
    assert "producer_0" in summary and "consumer" in summary


def test_model_files_example_configures_params(seed_dir):
    """The Model guide's "Files" example: THERMO = ;THERMO; becomes THERMO = 1."""
    (seed_dir / "params_inputs.txt").write_text("THERMO = ;THERMO;\n")
    write_script(seed_dir / "application.py", "print(open('params_inputs.txt').read().strip())")
    exp = simctl.Experiment("getting-started", launcher="local", plugins=simctl.make_plugins())
    model_settings = exp.create_run_settings(exe="python", exe_args=str(seed_dir / "application.py"))
    example_model = exp.create_model("model", model_settings, params={"THERMO": 1})
    example_model.attach_generator_files(to_configure="params_inputs.txt")
    exp.generate(example_model)
    exp.start(example_model)
    assert exp.get_status(example_model) == [Status.COMPLETED]
    out = seed_dir / "getting-started" / "model" / "model.out"
    assert out.read_text().startswith("THERMO = ") and "1" in out.read_text()
    assert ";THERMO;" not in out.read_text()
    params = json.loads((seed_dir / "getting-started" / "model" / "simctl-params.json").read_text())
    assert params["params"] == {"THERMO": 1}
