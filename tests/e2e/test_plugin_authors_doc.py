"""docs/plugin-authors.md against the code.

* The example launcher package ``examples/simctl-myslurm`` is shown in the doc
  byte for byte, and imports only public names (as does every Python block
  of the doc).
* Pip-installed for real (a wheel built by hatchling, its entry point in its
  dist-info), ``simctl plugins list`` shows it as external, its option and
  settings checks hold without a cluster, and on the REAL Slurm cluster
  (tests marked ``slurm``) it runs a model and an ensemble of 3 as one batch
  job, and stops running ones as CANCELLED.
* The doc's hook and entity examples run as written, on the local launcher.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest
from _paths import REPO
from _plugin_helpers import make_visible, pip_install_target
from slurm_helpers import (
    outside_allocation,
    require_slurm,
    scancel_quietly,
    squeue_state,
    wait_until,
)

import simctl
from simctl import ConfigError, JobStatus, SchedulerError, Status

DOC = REPO / "docs" / "plugin-authors.md"
EXAMPLE = REPO / "examples" / "simctl-myslurm"
MODULE = EXAMPLE / "simctl_myslurm.py"
PY = sys.executable


def doc_block(label: str) -> str:
    """The fenced code block right after ``<!-- example: label -->`` in the doc."""
    text = DOC.read_text(encoding="utf-8")
    marker = f"<!-- example: {label} -->\n"
    assert text.count(marker) == 1, f"the doc must mark exactly one block {marker.strip()}"
    rest = text[text.index(marker) + len(marker):]
    m = re.match(r"```[a-z]*\n(.*?)^```\n", rest, re.S | re.M)
    assert m, f"no fenced block right after {marker.strip()}"
    return m.group(1)


def doc_python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```\n", DOC.read_text(encoding="utf-8"), re.S | re.M)


def run_doc_block(label: str) -> dict[str, Any]:
    """Execute a doc block as a module; return its namespace."""
    ns: dict[str, Any] = {"__name__": f"plugin_authors_doc_{label}"}
    exec(compile(doc_block(label), f"{DOC}#{label}", "exec"), ns)
    return ns


# -- (a) the doc shows the example verbatim ------------------------------------------------------


def test_the_doc_shows_the_example_launcher_module_byte_for_byte():
    assert doc_block("examples/simctl-myslurm/simctl_myslurm.py") == MODULE.read_text(encoding="utf-8")


def test_the_doc_shows_the_example_pyproject_byte_for_byte():
    assert doc_block("examples/simctl-myslurm/pyproject.toml") == (EXAMPLE / "pyproject.toml").read_text(
        encoding="utf-8")


def test_the_example_launcher_stays_small():
    assert len(MODULE.read_text().splitlines()) < 100


# -- (b) public names only ----------------------------------------------------------------------


def non_public_uses(source: str) -> list[str]:
    """Every import or ``simctl.X`` use in ``source`` that is not public: a
    module of simctl other than ``simctl`` itself, a name not in
    ``simctl.__all__``, or a third-party module."""
    public = set(simctl.__all__)
    bad: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if alias.name != "simctl" and (top == "simctl" or top not in sys.stdlib_module_names):
                    bad.append(f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or (module != "simctl" and (module.split(".")[0] == "simctl"
                                                      or module.split(".")[0] not in sys.stdlib_module_names)):
                bad.append(f"from {'.' * node.level}{module} import ...")
            elif module == "simctl":
                bad += [f"from simctl import {a.name}" for a in node.names if a.name not in public]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "simctl":
            if node.attr not in public:
                bad.append(f"simctl.{node.attr}")
    return bad


def test_the_example_imports_only_public_names():
    source = MODULE.read_text()
    assert non_public_uses(source) == []
    # not vacuous: it does build on the public scheduler base
    assert "simctl.SchedulerLauncher" in source and "from simctl import" in source


def test_the_public_name_check_catches_private_imports():
    assert non_public_uses("import simctl.core.scheduler") == ["import simctl.core.scheduler"]
    assert non_public_uses("from simctl.plugins.launchers import slurm") == [
        "from simctl.plugins.launchers import ..."]
    assert non_public_uses("from simctl import Controller") == ["from simctl import Controller"]
    assert non_public_uses("import simctl\nsimctl.core") == ["simctl.core"]


def test_every_python_block_of_the_doc_uses_only_public_names():
    blocks = doc_python_blocks()
    assert len(blocks) >= 6
    for block in blocks:
        assert non_public_uses(block) == [], block


# -- (c) the example, pip-installed for real ---------------------------------------------------------


@pytest.fixture(scope="session")
def myslurm_site(tmp_path_factory: pytest.TempPathFactory):
    """examples/simctl-myslurm pip-installed into a directory of its own (as
    conftest's ``plugin_site`` installs the other example packages)."""
    site = tmp_path_factory.mktemp("myslurm-site")
    pip_install_target(site, [EXAMPLE])
    yield site
    shutil.rmtree(site, ignore_errors=True)


@pytest.fixture
def myslurm(myslurm_site: Path, clean_env: pytest.MonkeyPatch) -> Any:
    """The installed example visible to this test (in process and to
    subprocesses); returns its module, imported from the installed copy."""
    make_visible(myslurm_site, clean_env)
    sys.modules.pop("simctl_myslurm", None)
    import simctl_myslurm

    assert Path(simctl_myslurm.__file__).parent == myslurm_site
    return simctl_myslurm


def _json(proc) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    return {rec["name"]: rec for rec in json.loads(proc.stdout)}


def test_plugins_list_shows_myslurm_as_an_external_launcher(myslurm, simctl_cli):
    data = _json(simctl_cli("plugins", "list", "--json", "--family", "launcher"))
    rec = data["myslurm"]
    assert (rec["distribution"], rec["version"], rec["builtin"]) == ("simctl-myslurm", "0.1.0", False)
    assert rec["provides"] == {"launcher": ["myslurm"]}
    assert rec["hooks"] == ["simctl_register_launchers"]
    assert rec["status"] == ("ok" if shutil.which("sbatch") else "unavailable")
    table = simctl_cli("plugins", "list")
    row = next(r for r in table.stdout.splitlines() if r.startswith("│") and r.split()[1] == "myslurm")
    assert "external" in row and "simctl-myslurm" in row


def myslurm_exp(tmp_path: Path, plugins: simctl.Plugins | None = None, **options: Any) -> simctl.Experiment:
    return simctl.Experiment("study", exp_path=str(tmp_path / "study"), launcher="myslurm",
                             plugins=plugins or simctl.make_plugins(), launcher_options=options)


def test_an_unknown_launcher_option_is_an_error_listing_the_accepted_ones(myslurm, tmp_path):
    with pytest.raises(ConfigError) as err:
        myslurm_exp(tmp_path, partiton="debug")
    msg = str(err.value)
    assert "'partiton'" in msg and "did you mean 'partition'" in msg and "accepted: 'partition'" in msg
    with pytest.raises(ConfigError, match="partition must be a non-empty string"):
        myslurm_exp(tmp_path, partition="")
    assert not (tmp_path / "study").exists()


def test_check_settings_keeps_the_builtin_checks_and_refuses_arrays(myslurm, tmp_path):
    exp = myslurm_exp(tmp_path, partition="debug")
    srun = exp.create_model("m", simctl.RunSettings(exe=PY, run_command="srun"), path=str(tmp_path))
    with pytest.raises(ConfigError, match="does not support run command 'srun'"):  # the base's check, kept
        exp.preview(srun)
    rs = exp.create_run_settings(exe=PY)
    arr = exp.create_ensemble("arr", replicas=2, run_settings=rs,
                              batch_settings=exp.create_batch_settings(array=True))
    with pytest.raises(ConfigError, match="runs no job arrays; got array=True"):
        exp.preview(arr)
    with pytest.raises(ConfigError, match="runs no job arrays"):
        exp.start(arr, block=False)
    assert not (tmp_path / "study").exists()  # refused before anything was written


def test_preview_is_pure_and_shows_the_script_and_the_submit_command(myslurm, tmp_path, snapshot):
    exp = myslurm_exp(tmp_path, partition="debug")
    rs = exp.create_run_settings(exe=PY, exe_args=["-c", "pass"])
    model = exp.create_model("solo", rs)
    ens = exp.create_ensemble("trio", params={"x": [1, 2, 3]}, run_settings=rs,
                              batch_settings=exp.create_batch_settings(time="00:10:00", batch_args={"N": 1},
                                                                       hostlist="n1,n2"))
    exp.generate(model, ens)
    before = snapshot(tmp_path)
    text = exp.preview(model, ens, show=False)
    assert snapshot(tmp_path) == before
    assert text.count("# submitted with: sbatch --parsable ") == 2
    assert '#SBATCH --partition="debug"' in text and '#SBATCH --time="00:10:00"' in text
    assert '#SBATCH -N "1"' in text and '#SBATCH --job-name="trio"' in text
    assert '#SBATCH --nodelist="n1,n2"' in text and text.count("--nodelist") == 1


def test_the_state_table_keeps_an_unknown_state_as_unknown_with_its_text(myslurm):
    assert myslurm.job_status("RUNNING", "None") == JobStatus(Status.RUNNING, None, "", raw="RUNNING")
    assert myslurm.job_status("PENDING", "Priority") == JobStatus(Status.QUEUED, None, "Priority", raw="PENDING")
    odd = myslurm.job_status("RESV_DEL_HOLD", "None")
    assert odd.status is Status.UNKNOWN and odd.raw == "RESV_DEL_HOLD" and "RESV_DEL_HOLD" in odd.reason
    assert not odd.done  # still watched: a known state may come back
    launcher = myslurm.MySlurmLauncher()
    assert launcher.killed(JobStatus(Status.FAILED, raw="TIMEOUT"))
    assert launcher.killed(JobStatus(Status.CANCELLED, raw="CANCELLED"))
    assert not launcher.killed(JobStatus(Status.FAILED, raw="FAILED"))


def test_parse_submit_finds_the_id_before_a_warning_and_refuses_no_id(myslurm):
    launcher = myslurm.MySlurmLauncher()
    argv = ["sbatch", "--parsable", "job.sh"]
    # what sbatch really prints for `-N 2 -n 1` on a one-node cluster: exit 0, id on stdout, warning on stderr
    out = "532\nsbatch: Warning: can't run 1 processes on 2 nodes, setting nnodes to 1\n"
    assert launcher.parse_submit(out, argv) == "532"
    assert launcher.parse_submit("77;cluster\n", argv) == "77"
    with pytest.raises(SchedulerError, match="sbatch printed no job id"):
        launcher.parse_submit("", argv)


def test_directives_are_quoted_for_sbatchs_parser(myslurm):
    assert myslurm.directive("output", '/a b/"x"\\y') == '--output="/a b/\\"x\\"\\\\y"'
    assert myslurm.directive("N", 2) == '-N "2"'
    assert myslurm.directive("exclusive", None) == "--exclusive"


# -- (c) on the real Slurm cluster ----------------------------------------------------------------------


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    require_slurm()
    outside_allocation(monkeypatch)


REPORT = """
    import json, os, sys
    print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "job": os.environ.get("SLURM_JOB_ID"),
                      "partition": os.environ.get("SLURM_JOB_PARTITION"),
                      "greeting": os.environ.get("GREETING"), "token": os.environ.get("TOKEN")}))
"""


class Secret:
    """Hands every step a secret, as a store's credentials would be."""

    @simctl.hookimpl
    def simctl_entity_before_launch(self, step):
        step.secret_env["TOKEN"] = "tok-7d1e-secret"


def program(tmp_path: Path, code: str) -> str:
    path = tmp_path / "prog.py"
    path.write_text(textwrap.dedent(code).lstrip())
    return str(path)


def parent(record: Any) -> str:
    job_id = record.job_id
    assert job_id and ":" in job_id, job_id
    return job_id.rpartition(":")[0]


@pytest.mark.slurm
def test_a_model_and_an_ensemble_of_3_as_one_batch_job_complete_on_slurm(myslurm, cluster, tmp_path):
    plugs = simctl.make_plugins()
    plugs.register(Secret(), name="secret")
    exp = myslurm_exp(tmp_path, plugs, partition="debug")
    rs = exp.create_run_settings(exe=PY, exe_args=[program(tmp_path, REPORT)], env_vars={"GREETING": "hello there"})
    model = exp.create_model("solo", rs)
    ens = exp.create_ensemble("trio", params={"x": [1, 2, 3]}, params_as_args=["x"], run_settings=rs,
                              batch_settings=exp.create_batch_settings(time="00:10:00"))
    exp.generate(model, ens)
    with exp:
        exp.start(model, ens)

    members = [model, *ens.models]
    assert exp.get_status(model, ens) == [Status.COMPLETED] * 4
    records = {r.key: r for r in exp.summary_data()}
    assert [records[m.key].returncode for m in members] == [0] * 4
    solo_job = parent(records["solo"])
    trio_jobs = [parent(records[m.key]) for m in ens.models]
    assert len(set(trio_jobs)) == 1 and trio_jobs[0] != solo_job  # the ensemble is ONE batch job
    assert [records[m.key].job_id for m in ens.models] == [f"{trio_jobs[0]}:{i}" for i in range(3)]

    reports = [json.loads((Path(m.path) / f"{m.name}.out").read_text()) for m in members]
    assert [r["job"] for r in reports] == [solo_job] + trio_jobs  # each ran inside its Slurm job
    assert {r["partition"] for r in reports} == {"debug"}  # the launcher option reached sbatch
    assert [r["argv"] for r in reports] == [[], ["-x", "1"], ["-x", "2"], ["-x", "3"]]
    assert [r["cwd"] for r in reports] == [m.path for m in members]
    assert {r["greeting"] for r in reports} == {"hello there"}
    assert {r["token"] for r in reports} == {"tok-7d1e-secret"}
    # the secret reached the processes through 0600 files only: never the scripts
    batch_dirs = [p for m in (model, ens) for p in Path(m.path).glob(".simctl-batch/*")]
    assert len(batch_dirs) == 2
    for d in batch_dirs:
        assert "tok-7d1e-secret" not in (d / "job.sh").read_text()
        for env in d.glob("*.env"):
            assert stat.S_IMODE(env.stat().st_mode) == 0o600 and "tok-7d1e-secret" in env.read_text()


SLEEPER = """
    import os, time
    open("pid", "w").write(str(os.getpid()))
    time.sleep(300)
"""


@pytest.mark.slurm
def test_stopping_running_ones_gives_cancelled_on_slurm(myslurm, cluster, tmp_path):
    exp = myslurm_exp(tmp_path, partition="debug")
    rs = exp.create_run_settings(exe=PY, exe_args=[program(tmp_path, SLEEPER)])
    model = exp.create_model("sleeper", rs)
    ens = exp.create_ensemble("pair", replicas=2, run_settings=rs,
                              batch_settings=exp.create_batch_settings(time="00:10:00"))
    exp.generate(model, ens)
    members = [model, *ens.models]
    jobs: set[str] = set()
    try:
        exp.start(model, ens, block=False)
        jobs = {parent(r) for r in exp.summary_data()}
        pids = [int(wait_until(lambda m=m: (Path(m.path) / "pid").exists() and (Path(m.path) / "pid").read_text(),
                               f"{m.name} to start")) for m in members]
        wait_until(lambda: exp.get_status(model, ens) == [Status.RUNNING] * 3, "RUNNING to be noticed")

        exp.stop(model, ens)

        assert exp.get_status(model, ens) == [Status.CANCELLED] * 3
        assert exp.finished(model) and exp.finished(ens)
        assert len(jobs) == 2 and all(squeue_state(j) in ("CANCELLED", "") for j in jobs)
        wait_until(lambda: not any(psutil.pid_exists(p) for p in pids), "the cancelled processes to be gone",
                   timeout=60)
    finally:
        exp.close()
        scancel_quietly(*jobs)


# -- the doc's hook and entity examples, as written ---------------------------------------------------------


class SeesTag:
    """Registered after RunTag: without RunTag's tryfirst it would run first
    (pluggy calls later registrations first) and see no tag."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    @simctl.hookimpl
    def simctl_entity_before_launch(self, step):
        self.seen.append(step.env.get("RUN_TAG"))


def test_the_hook_example_runs_as_written(tmp_path):
    RunTag = run_doc_block("hooks")["RunTag"]
    plugs = simctl.make_plugins()
    tag, sees = RunTag(), SeesTag()
    plugs.register(tag, name="runtag")
    plugs.register(sees, name="sees")
    with simctl.Experiment("tagged", exp_path=str(tmp_path / "tagged"), launcher="local", plugins=plugs) as exp:
        rs = exp.create_run_settings(exe=PY, exe_args=["-c", "import os; print(os.environ['RUN_TAG'], "
                                                             "os.environ['API_TOKEN'])"])
        ens = exp.create_ensemble("pair", replicas=2, run_settings=rs)
        exp.generate(ens)
        exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED] * 2
    assert exp.hook_errors == []
    for m in ens.models:
        assert (Path(m.path) / f"{m.name}.out").read_text().split() == [m.name, "s3cret"]
    assert sorted(sees.seen) == ["pair_0", "pair_1"]  # tryfirst: the tag was there before the others ran
    assert sorted(tag.finished) == [("pair_0", Status.COMPLETED), ("pair_1", Status.COMPLETED)]


CLIENT = """
import os, socket
host, port = os.environ["ECHO_ADDRESS"].split(":")
with socket.create_connection((host, int(port))) as s:
    s.sendall(b"ping")
    print(s.recv(1024).decode(), os.environ["ECHO_ADDRESS"])
"""


def test_the_entity_example_runs_until_stopped_and_hands_off_its_address(tmp_path):
    EchoServer = run_doc_block("entity")["EchoServer"]
    services = tmp_path / "services"
    services.mkdir()
    exp = simctl.Experiment("echo-demo", exp_path=str(tmp_path / "echo-demo"), launcher="local",
                            plugins=simctl.make_plugins())
    try:
        echo = EchoServer("echo", str(services))
        exp.start(echo)  # returns once ready, without waiting for it to end
        assert exp.get_status(echo) == [Status.RUNNING]
        address = (services / "echo-1.addr").read_text()
        model = exp.create_model("client", exp.create_run_settings(exe=PY, exe_args=["-c", CLIENT]),
                                 path=str(tmp_path))
        exp.start(model)
        assert exp.get_status(model) == [Status.COMPLETED]
        assert (tmp_path / "client.out").read_text().split() == ["ping", address]
        exp.stop(echo)
        assert exp.get_status(echo) == [Status.CANCELLED]
    finally:
        exp.close()
