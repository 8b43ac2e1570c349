"""add_ml_model / add_script / add_function on models and ensembles, loaded into
the feature store before the application starts: a standard store (an
Orchestrator) and colocated stores (TCP and Unix socket), against real
redis-servers and real processes. The applications check, at their very first
instruction, that every key is there with the bytes that were added."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import torch
from _lifecycle_helpers import PY, make_exp, write_script
from _store_helpers import free_ports

import simctl
from simctl import ConfigError, Status
from simctl.core.plugins import default_plugins
from simctl.ml.torch import serialize_model
from simctl.store import format as fmt, preload
from simctl.store.server import find_server

NEGATE = "def negate(x):\n\treturn torch.neg(x)\n"  # the documents' script


def timestwo(x):
    return 2 * x


# the application: at its start, each expected key (the JSON file argv[1]: [[kind, key], ...]) with the
# SHA-256 of its bytes, printed as JSON; exit 1 if one is missing
CHECKER = """
    import hashlib, json, sys
    from simctl.store import Client
    c = Client()
    seen = {}
    for kind, key in json.load(open(sys.argv[1])):
        if kind == "model":
            seen[key] = hashlib.sha256(c.get_model(key)).hexdigest() if c.model_exists(key) else None
        else:
            try:
                seen[key] = hashlib.sha256(c.get_script(key).encode()).hexdigest()
            except Exception:
                seen[key] = None
    print(json.dumps(seen), flush=True)
    sys.exit(0 if all(seen.values()) else 1)
"""


def torch_model(seed: int = 0) -> bytes:
    torch.manual_seed(seed)
    return serialize_model(torch.nn.Linear(3, 2).eval())


def onnx_file(path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(path), input_names=["x"],
                          output_names=["y"], dynamo=False)
    return path


def add_all(entity: Any, tmp_path: Path) -> None:
    """The four kinds: a model in memory, a model file, a script, a function."""
    entity.add_ml_model("lin", "TORCH", model=torch_model())
    entity.add_ml_model("lin_onnx", "ONNX", model_path=str(onnx_file(tmp_path / "lin.onnx")), batch_size=4,
                        min_batch_size=2, min_batch_timeout=5, tag="v1")
    entity.add_script("negate", script=NEGATE)
    entity.add_function("timestwo", function=timestwo)


def checker_settings(exp: simctl.Experiment, tmp_path: Path, keys_file: str = "keys.json") -> simctl.RunSettings:
    """Run settings of CHECKER reading the keys from ``tmp_path / keys_file`` (see :func:`expect`)."""
    prog = write_script(tmp_path / "checker.py", CHECKER)
    return exp.create_run_settings(exe=PY, exe_args=[str(prog), str(tmp_path / keys_file)])


def checker(exp: simctl.Experiment, tmp_path: Path, name: str) -> simctl.Model:
    """A model running CHECKER on the keys :func:`expect` writes for it."""
    return exp.create_model(name, checker_settings(exp, tmp_path, f"{name}.keys.json"), path=str(tmp_path))


def expect(tmp_path: Path, model: simctl.Model, keys_file: str = "") -> dict[str, str]:
    """Tell CHECKER the keys ``model``'s objects take; key -> the SHA-256 it should find."""
    keys = [[o.kind, key] for o in model.ml for key in o.store_keys()]
    (tmp_path / (keys_file or f"{model.name}.keys.json")).write_text(json.dumps(keys))
    return {key: o.sha256 for o in model.ml for key in o.store_keys()}


def seen_by(tmp_path: Path, name: str) -> dict[str, Any]:
    out = (tmp_path / f"{name}.out").read_text()
    assert out, (tmp_path / f"{name}.err").read_text()
    return json.loads(out.splitlines()[0])


@pytest.fixture
def exp_db(stores: Any) -> tuple[simctl.Experiment, Any]:
    """An experiment and its running store: the session's one-server store and the experiment that
    started it (tests/conftest.py ``stores``), emptied for the test."""
    shared = stores.orchestrator(1).emptied()
    return shared.exp, shared.db


def monitored(r: redis.Redis, action: Callable[[], object]) -> list[str]:
    """The commands the server ran while ``action`` ran (MONITOR)."""
    seen: list[str] = []
    ready = threading.Event()
    end = "simctl-test-monitor-end"

    def watch() -> None:
        with r.monitor() as m:
            ready.set()
            for cmd in m.listen():
                if end in cmd["command"]:
                    return
                seen.append(cmd["command"])

    thread = threading.Thread(target=watch)
    thread.start()
    ready.wait()
    try:
        action()
    finally:
        r.echo(end)
        thread.join()
    return seen


def raw(db: Any) -> redis.Redis:
    host, _, port = db.get_address()[0].rpartition(":")
    return redis.Redis(host=host, port=int(port), username=db.username, password=db.password)


# -- a standard store -------------------------------------------------------------------------------


def test_a_standard_store_holds_every_kind_before_the_application_starts(tmp_path, exp_db):
    exp, db = exp_db
    model = checker(exp, tmp_path, "sim")
    add_all(model, tmp_path)
    want = expect(tmp_path, model)
    assert len(want) == 4
    assert "not launched" not in exp.preview(model, show=False)  # a valid setup previews without error
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED], (tmp_path / "sim.err").read_text()
    assert seen_by(tmp_path, "sim") == want
    # what was stored is what the backends run: the metadata, the model, the script, the function
    r = raw(db)
    head = fmt.parse_model_header(r.get("lin_onnx"))
    assert (head.backend, head.device, head.batch_size, head.min_batch_size, head.min_batch_timeout, head.tag) == \
        ("ONNX", "CPU", 4, 2, 5, "v1")
    torch_backend = default_plugins().get("backend", "TORCH")()
    x = np.arange(3, dtype=np.float32).reshape(1, 3)
    net = torch_backend.load(fmt.decode_model(r.get("lin"))[1])
    torch.manual_seed(0)
    y = torch.nn.Linear(3, 2)(torch.from_numpy(x)).detach().numpy()  # the same weights as torch_model()
    np.testing.assert_allclose(torch_backend.run(net, [x])[0], y, rtol=1e-6)
    fn = torch_backend.load_script(fmt.decode_script(r.get("timestwo"))[1])
    np.testing.assert_array_equal(torch_backend.run_script(fn, "timestwo", [x])[0], 2 * x)
    neg = torch_backend.load_script(fmt.decode_script(r.get("negate"))[1])
    np.testing.assert_array_equal(torch_backend.run_script(neg, "negate", [x])[0], -x)
    assert not (tmp_path / preload.DIRNAME).exists()  # no files for a standard store


def test_an_ensemble_stores_a_model_once_and_every_member_sees_it(tmp_path, exp_db):
    exp, db = exp_db
    lin = preload.ml_model("lin", "TORCH", model=torch_model())
    rs = checker_settings(exp, tmp_path)
    (tmp_path / "keys.json").write_text(json.dumps([["model", "lin"]]))
    ens = exp.create_ensemble("ens", params={"x": [1, 2]}, run_settings=rs, path=str(tmp_path))
    ens.add_ml_model("lin", "TORCH", model=torch_model())  # before its members are made from the params
    ens.add_model(exp.create_model("extra", rs, path=str(tmp_path)))  # and a member added afterwards
    assert len(ens) == 3 and all(m.ml == [lin] for m in ens)
    commands = monitored(raw(db), lambda: exp.start(ens))
    assert exp.get_status(ens) == [Status.COMPLETED] * 3
    writes = [c.split()[:3] for c in commands
              if c.startswith("SET lin ") or (c.startswith("RENAME ") and c.split()[2:3] == ["lin"])]
    assert len(writes) == 1, writes  # once for three (a large value lands through a temporary key and RENAME)
    for m in ens:  # members made from params run in <ensemble path>/<member> (issue 19), "extra" in its path
        assert seen_by(Path(m.path), m.name) == {"lin": lin.sha256}


def test_multi_gpu_objects_are_stored_once_per_gpu(tmp_path, exp_db):
    exp, db = exp_db
    model = checker(exp, tmp_path, "sim")
    model.add_ml_model("lin", "TORCH", model=torch_model(), device="GPU", devices_per_node=2)
    model.add_script("neg", script=NEGATE, device="GPU", devices_per_node=2, first_device=1)
    model.add_function("tw", function=timestwo, device="GPU", first_device=3)  # one GPU: the key as named
    model.add_ml_model("on_cpu", "TORCH", model=torch_model(), device="CPU", devices_per_node=4, first_device=2)
    model.add_ml_model("one", "TORCH", model=torch_model(), device="GPU:5")
    keys = [[o.kind, key] for o in model.ml for key in o.store_keys()]
    assert [k for _, k in keys] == ["lin.GPU:0", "lin.GPU:1", "neg.GPU:1", "neg.GPU:2", "tw", "on_cpu", "one"]
    want = expect(tmp_path, model)
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED], (tmp_path / "sim.err").read_text()
    assert seen_by(tmp_path, "sim") == want
    r = raw(db)
    devices = {k: (fmt.parse_model_header if kind == "model" else fmt.parse_script_header)(r.get(k)).device
               for kind, k in keys}
    assert devices == {"lin.GPU:0": "GPU:0", "lin.GPU:1": "GPU:1", "neg.GPU:1": "GPU:1", "neg.GPU:2": "GPU:2",
                       "tw": "GPU:3", "on_cpu": "CPU", "one": "GPU:5"}
    stored = {k for k in r.keys() if not k.startswith(b"simctl.ml{")}  # not the inference workers' keys
    assert stored == {k.encode() for k in devices}  # nothing under the bare multi-GPU names


def test_members_with_different_objects_under_one_name_are_refused_before_anything_is_stored(tmp_path, exp_db):
    exp, db = exp_db
    ens = exp.create_ensemble("ens")
    for i in range(2):
        m = exp.create_model(f"m{i}", exp.create_run_settings(exe=PY, exe_args=["-c", "pass"]), path=str(tmp_path))
        m.add_ml_model("lin", "TORCH", model=torch_model(seed=i))
        ens.add_model(m)
    with pytest.raises(ConfigError, match=r"member 'm0' and member 'm1' both load key 'lin' into the store of "
                                          r"ensemble 'ens', with different contents"):
        exp.start(ens)
    assert raw(db).dbsize() == 0 and exp.get_status(ens) == [Status.NEW] * 2


def test_a_store_started_in_the_same_call_receives_the_objects(tmp_path):
    exp = make_exp(tmp_path)
    db = exp.create_database(port=free_ports())
    model = checker(exp, tmp_path, "sim")
    model.add_script("negate", script=NEGATE)
    want = expect(tmp_path, model)
    try:
        exp.preview(db, model, show=False)
        exp.start(model, db)
        assert exp.get_status(model) == [Status.COMPLETED]
        assert seen_by(tmp_path, "sim") == want
    finally:
        exp.stop()


# -- colocated stores --------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "uds"])
def test_a_colocated_store_holds_every_kind_before_the_application_starts(tmp_path, transport):
    exp = make_exp(tmp_path)
    model = checker(exp, tmp_path, "sim")
    if transport == "tcp":
        model.colocate_db_tcp(port=free_ports())
    else:
        model.colocate_db_uds()
    add_all(model, tmp_path)
    want = expect(tmp_path, model)
    manifest = tmp_path / preload.DIRNAME / "sim" / "manifest.json"
    text = exp.preview(model, show=False)
    assert f'"--preload", "{manifest}"' in text and "not launched" not in text
    assert not (tmp_path / preload.DIRNAME).exists()  # preview writes nothing
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED], (tmp_path / "sim.err").read_text()
    assert seen_by(tmp_path, "sim") == want
    # the files: the user's alone; each object's bytes once
    root = tmp_path / preload.DIRNAME
    for d in (root, root / "data", manifest.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    blobs = sorted(p.name for p in (root / "data").iterdir())
    assert blobs == sorted(o.sha256 for o in model.ml)
    for f in [manifest, *(root / "data").iterdir()]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_colocated_members_of_an_ensemble_each_preload_their_store(tmp_path):
    exp = make_exp(tmp_path)
    rs = checker_settings(exp, tmp_path)
    (tmp_path / "keys.json").write_text(json.dumps([["script", "negate"]]))
    ens = exp.create_ensemble("ens", run_settings=rs, replicas=2, path=str(tmp_path))
    for m in ens:  # members made first, the script added afterwards
        m.colocate_db_uds()
    ens.add_script("negate", script=NEGATE)
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED] * 2
    sha = ens.ml[0].sha256
    for m in ens:  # each member in its own directory, <ensemble path>/<member> (issue 19)
        assert seen_by(tmp_path / m.name, m.name) == {"negate": sha}
        assert (tmp_path / m.name / preload.DIRNAME / "ens" / m.name / "manifest.json").is_file()
        assert [p.name for p in (tmp_path / m.name / preload.DIRNAME / "data").iterdir()] == [sha]  # once each


def test_a_failed_preload_fails_the_model_before_its_application_runs(tmp_path):
    # a store too small for its models: a SET is refused (OOM)
    exp = make_exp(tmp_path)
    model = checker(exp, tmp_path, "sim")
    model.colocate_db_tcp(port=free_ports(), maxmemory="2mb")
    for i in range(2):
        model.add_ml_model(f"big{i}", "ONNX", model=os.urandom(3 << 20))
    expect(tmp_path, model)
    exp.start(model)
    assert exp.get_status(model) == [Status.FAILED]
    err = (tmp_path / "sim.err").read_text()
    assert f"simctl store supervisor: could not load the ML models and scripts of " \
           f"{tmp_path / preload.DIRNAME / 'sim' / 'manifest.json'} into the store" in err
    assert "set_model('big" in err and "command not allowed when used memory > 'maxmemory'" in err
    assert "exited before it was ready" in err
    assert (tmp_path / "sim.out").read_text() == ""  # the application never ran


def test_the_supervisor_reports_a_bad_manifest_and_never_becomes_ready(tmp_path):
    obj = preload.script("negate", script=NEGATE)
    step = simctl.ProcessStep(name="m", argv=["x"], cwd=str(tmp_path), per_node=[])
    manifest = preload.write_manifest(step, [obj])
    (tmp_path / preload.DIRNAME / "data" / obj.sha256).write_text("def negate(x):\n\treturn x\n")  # changed
    ready = tmp_path / "ready"
    sock = tmp_path / "db.sock"
    argv = [PY, "-m", "simctl.store.supervisor", "--colocated", "--server", find_server(None), "--nosave",
            "--port", "0", "--unixsocket", str(sock), "--log", str(tmp_path / "db.log"), "--preload", manifest]
    env = dict(os.environ, SSDB_PASSWORD="pw", SIMCTL_READY_FILE=str(ready))
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert f"could not load the ML models and scripts of {manifest}" in proc.stderr
    assert "changed after it was written" in proc.stderr
    assert not ready.exists() and not sock.exists()  # never reported ready; the server was stopped


def test_preload_from_manifest_stores_into_a_running_server(tmp_path, exp_db):
    db = exp_db[1]
    objs = [preload.ml_model("lin", "TORCH", model=torch_model(), device="GPU", devices_per_node=2),
            preload.function("tw", function=timestwo)]
    step = simctl.ProcessStep(name="m", argv=["x"], cwd=str(tmp_path), key="ens/m")
    manifest = preload.write_manifest(step, objs)
    assert manifest == str(tmp_path / preload.DIRNAME / "ens" / "m" / "manifest.json")
    assert preload.preload_from_manifest(db.get_address()[0], db.password, manifest, username=db.username) == 3
    r = raw(db)
    assert fmt.decode_model(r.get("lin.GPU:1"))[1] == objs[0].data
    assert fmt.decode_script(r.get("tw"))[1].encode() == objs[1].data
    with pytest.raises(ValueError, match=r"cannot read .*nothing.json: No such file or directory"):
        preload.preload_from_manifest(db.get_address()[0], db.password, str(tmp_path / "nothing.json"),
                                      username=db.username)


# -- no store ----------------------------------------------------------------------------------------


def test_a_model_with_ml_objects_and_no_store_is_refused_before_anything_is_written(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("sim", exp.create_run_settings(exe=PY, exe_args=["-c", "pass"]), path=str(tmp_path))
    model.add_ml_model("cnn", "TORCH", model=torch_model())
    model.add_function("tw", function=timestwo)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    message = (r"model 'sim' has ML model 'cnn', function 'tw' to load into the feature store before it starts, "
               r"but no store runs: start one first \(db = exp.create_database\(...\); exp.start\(db\)\), or "
               r"colocate one with the model \(model.colocate_db_tcp\(\) or model.colocate_db_uds\(\)\)")
    with pytest.raises(ConfigError, match=message):
        exp.preview(model, show=False)
    with pytest.raises(ConfigError, match=message):
        exp.start(model)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no manifest, no output, no .simctl-ml
    assert exp.get_status(model) == [Status.NEW]


def test_an_ensemble_without_a_store_names_the_members_that_need_one(tmp_path):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings(exe=PY, exe_args=["-c", "pass"])
    ens = exp.create_ensemble("ens", run_settings=rs, replicas=3, path=str(tmp_path))
    ens["ens_1"].add_script("neg", script=NEGATE)
    with pytest.raises(ConfigError, match=r"ensemble 'ens' \(member ens_1\) has script 'neg' to load"):
        exp.start(ens)
    ens["ens_1"].colocate_db_uds()  # its own store: the others need none
    assert "not launched" not in exp.preview(ens, show=False)
    ens.add_script("neg2", script=NEGATE)
    with pytest.raises(ConfigError, match=r"ensemble 'ens' \(members ens_0, ens_2\) has script 'neg2' to load"):
        exp.preview(ens, show=False)
    assert exp.get_status(ens) == [Status.NEW] * 3


# -- the API: members, duplicates, bad input ----------------------------------------------------------


def test_ensemble_objects_reach_every_member_present_and_future(tmp_path):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings(exe=PY)
    ens = exp.create_ensemble("ens", params={"x": [1, 2]}, run_settings=rs)
    early = exp.create_model("early", rs)
    ens.add_model(early)
    ens.add_script("a", script=NEGATE)
    a = ens.ml[0]
    assert early.ml == [a]
    members = list(ens.models)  # made now, with a
    ens.add_function("b", function=timestwo)
    late = exp.create_model("late", rs)
    ens.add_model(late)
    b = ens.ml[1]
    assert [m.ml for m in members] == [[a, b]] * 3 and late.ml == [a, b]
    assert all(m.ml[0] is a for m in ens)  # one object, shared: its bytes are held once


def test_a_name_is_taken_once_per_entity(tmp_path):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings(exe=PY)
    model = exp.create_model("sim", rs)
    model.add_ml_model("cnn", "TORCH", model=torch_model())
    with pytest.raises(ConfigError, match=(r"add_script\('cnn'\): model 'sim' already has ML model 'cnn' \(key 'cnn' "
                                           r"in the store\); models, scripts and functions share the store's keys: "
                                           r"give script 'cnn' another name")):
        model.add_script("cnn", script=NEGATE)
    model.add_ml_model("multi", "TORCH", model=torch_model(), device="GPU", devices_per_node=2)
    with pytest.raises(ConfigError, match=r"model 'sim' already has ML model 'multi' \(key 'multi.GPU:1'"):
        model.add_function("multi.GPU:1", function=timestwo)
    assert [o.name for o in model.ml] == ["cnn", "multi"]
    ens = exp.create_ensemble("ens", run_settings=rs, replicas=2)
    ens["ens_0"].add_script("s", script=NEGATE)
    with pytest.raises(ConfigError, match=r"member 'ens_0' of ensemble 'ens' already has script 's'"):
        ens.add_script("s", script=NEGATE)
    assert ens.ml == [] and ens["ens_1"].ml == []  # nothing changed
    ens.add_script("t", script=NEGATE)
    with pytest.raises(ConfigError, match=r"ensemble 'ens' already has script 't'"):
        ens.add_function("t", function=timestwo)
    other = exp.create_model("other", rs)
    other.add_ml_model("t", "TORCH", model=torch_model())
    with pytest.raises(ConfigError, match=r"add_model\('other'\): model 'other' already has ML model 't'"):
        ens.add_model(other)
    assert len(ens) == 2 and other.ensemble is None


def _missing(tmp_path: Path) -> str:
    return str(tmp_path / "missing.pt")


ML, SCRIPT, FUNCTION = "add_ml_model", "add_script", "add_function"
DEVICES = r"device must be 'CPU', 'GPU' \(the first GPU\) or 'GPU:n'"
BAD: list[tuple[str, Callable[[Path], dict[str, Any]], str]] = [
    (ML, lambda p: {"backend": 3}, r"add_ml_model\('m'\): backend must be a backend's name \(letters, digits, "
                                   r"'_', '\.', '\+', '-'; such as 'ONNX' or 'TORCH'\), got 3 \(int\)"),
    (ML, lambda p: {"backend": " "}, r"add_ml_model\('m'\): backend must be a backend's name .*got ' '"),
    (ML, lambda p: {"model": b"x", "model_path": str(p)}, r"either in memory .* not both; got model=b'x'"),
    (ML, lambda p: {"model": None}, r"add_ml_model\('m'\): no model: give model=bytes"),
    (ML, lambda p: {"model": None, "model_path": _missing(p)}, r"model_path '.*missing.pt' cannot be read: No such"),
    (ML, lambda p: {"model": None, "model_path": str(p)}, r"model_path '.*' cannot be read: Is a directory"),
    (ML, lambda p: {"model": "not bytes"}, r"model must be bytes .*got str"),
    (ML, lambda p: {"model": b""}, r"the model is empty \(0 bytes\)"),
    (ML, lambda p: {"device": "TPU"}, r"add_ml_model\('m'\): " + DEVICES + ".*got 'TPU'"),
    (ML, lambda p: {"device": "CPU:0"}, DEVICES + ".*got 'CPU:0'"),
    (ML, lambda p: {"devices_per_node": 0}, r"add_ml_model\('m'\): devices_per_node must be a positive integer, got 0"),
    (ML, lambda p: {"devices_per_node": "2"}, r"devices_per_node must be a positive integer, got '2'"),
    (ML, lambda p: {"first_device": -1}, r"first_device must be an integer >= 0, got -1"),
    (ML, lambda p: {"first_device": True}, r"first_device must be an integer >= 0, got True"),
    (ML, lambda p: {"device": "GPU:1", "devices_per_node": 2},
     r"device 'GPU:1' names one GPU, but devices_per_node is 2; .*'GPU' with devices_per_node=2 and first_device=1"),
    (ML, lambda p: {"device": "GPU:1", "first_device": 2}, r"device 'GPU:1' and first_device=2 name different GPUs"),
    (ML, lambda p: {"batch_size": -1}, r"add_ml_model\('m'\): batch_size must be an int >= 0 \(0: none\), got -1"),
    (ML, lambda p: {"min_batch_timeout": 1.5}, r"min_batch_timeout must be an int >= 0 \(0: none\), got 1.5"),
    (ML, lambda p: {"batch_size": 2, "min_batch_size": 3}, r"min_batch_size \(3\) is larger than batch_size \(2\)"),
    (ML, lambda p: {"tag": 3}, r"tag must be a str, got 3"),
    (ML, lambda p: {"inputs": [1]}, r"inputs must be None, a name or a list of names"),
    (ML, lambda p: {"name": ""}, r"name must be a non-empty str .*got ''"),
    (SCRIPT, lambda p: {"script": NEGATE, "script_path": str(p)}, r"add_script\('m'\): .* not both"),
    (SCRIPT, lambda p: {"script": None}, r"add_script\('m'\): give the script .* not neither"),
    (SCRIPT, lambda p: {"script": None, "script_path": _missing(p)}, r"script_path '.*missing.pt' cannot be read: No "),
    (SCRIPT, lambda p: {"script": "  "}, r"script must be non-empty TorchScript source text; got an empty str"),
    (SCRIPT, lambda p: {"script": b"def f(x): return x"}, r"script must be non-empty TorchScript source .*bytes"),
    (SCRIPT, lambda p: {"device": "GPU:x"}, r"add_script\('m'\): " + DEVICES + ".*got 'GPU:x'"),
    (FUNCTION, lambda p: {"function": None}, r"add_function\('m'\): no function: give function="),
    (FUNCTION, lambda p: {"function": 42}, r"function must be a Python function or its TorchScript source"),
    (FUNCTION, lambda p: {"function": lambda x: x},
     r"add_function\('m'\): function cannot be serialized: serialize_function: torch.jit.script failed"),
    (FUNCTION, lambda p: {"function": ""}, r"function must be non-empty TorchScript source text"),
    (FUNCTION, lambda p: {"devices_per_node": 1.0}, r"devices_per_node must be a positive integer"),
]

GOOD: dict[str, dict[str, Any]] = {
    "add_ml_model": {"name": "m", "backend": "TORCH", "model": b"\x00model"},
    "add_script": {"name": "m", "script": NEGATE},
    "add_function": {"name": "m", "function": timestwo},
}


@pytest.mark.parametrize("kind", ["model", "ensemble"])
def test_the_backend_is_not_looked_up_in_the_drivers_plugins(tmp_path, missing_runtime, kind):  # noqa: F811
    """The store's inference workers run the model, with the plugins of the
    experiment that started them: the driver does not know better (a backend
    it has not installed, or whose runtime it lacks, may be the workers'), and
    a backend the workers do not know is the error of the request that runs it."""
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings(exe=PY)
    entity = exp.create_model("sim", rs) if kind == "model" else exp.create_ensemble("ens", run_settings=rs,
                                                                                       replicas=2)
    entity.add_ml_model("jax", "JAX", model=b"\x00model")  # installed nowhere here
    entity.add_ml_model("missing", "NOSUCHRT", model=b"\x00model")  # its runtime is not installed here
    assert [(o.name, o.spec.backend) for o in entity.ml] == [("jax", "JAX"), ("missing", "NOSUCHRT")]


@pytest.mark.parametrize("kind", ["model", "ensemble"])
@pytest.mark.parametrize("method, bad, match", BAD, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BAD)])
def test_bad_input_is_refused_at_the_call(tmp_path, missing_runtime, kind, method, bad, match):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings(exe=PY)
    entity = exp.create_model("sim", rs) if kind == "model" else exp.create_ensemble("ens", run_settings=rs,
                                                                                       replicas=2)
    members = list(getattr(entity, "models", []))  # an ensemble's, made before the call
    with pytest.raises(ConfigError, match=match):
        getattr(entity, method)(**(GOOD[method] | bad(tmp_path)))
    assert entity.ml == [] and all(m.ml == [] for m in members)  # nothing added
    getattr(entity, method)(**GOOD[method])  # the good arguments pass
    assert [o.name for o in entity.ml] == ["m"] and all(m.ml == entity.ml for m in members)
