"""The fixtures SmartSim's own tests use (``test_dir``, ``fileutils``,
``wlmutils``, ``dbutils``...), written for simctl's SmartSim layer: copied as
``conftest.py`` beside SmartSim's tests by ``scripts/smartsim-conformance.sh``
(SmartSim's own conftest imports its private modules, which the layer does
not have). Facts (names, behaviour) follow SmartSim's conftest; no code of it.
Not collected by simctl's own suite (no ``test_`` prefix, not a conftest here)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import typing as t
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from smartsim.settings import RunSettings

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "tests" / "test_output"
CONFS = HERE / "tests" / "test_configs"


def pytest_configure(config: pytest.Config) -> None:
    # what SmartSim's conftest sets on the pytest module for its tests to read
    pytest.test_launcher = "local"  # type: ignore[attr-defined]
    pytest.wlm_options = ["slurm", "pbs", "lsf", "pals", "dragon"]  # type: ignore[attr-defined]
    pytest.test_device = "CPU"  # type: ignore[attr-defined]
    for mark in ("group_a", "group_b", "slow_tests"):
        config.addinivalue_line("markers", mark)
    # a job started in the background of a non-interactive shell (`bash script.sh &`) inherits SIGINT
    # ignored, and then SmartSim's Ctrl-C tests (test_interrupt) see no KeyboardInterrupt at all: give
    # the tests Python's own handler, as in a terminal
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    """A port free with the next three (SmartSim's tests use ``port + 1``; a store of
    3 shards takes ``port..port+2``) and their cluster buses (``+ 10000``): drawn below
    the ephemeral range, where SmartSim's own tests' ports (6780...) are."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 45000)
        if all(_free(p) for i in range(4) for p in (port + i, port + 10000 + i)):
            return port


class WLMUtils:
    @staticmethod
    def get_test_launcher() -> str:
        return "local"

    @staticmethod
    def set_test_launcher(name: str) -> None:
        if name != "local":
            raise ValueError("the conformance run uses the local launcher only")

    @staticmethod
    def get_test_port() -> int:
        return _free_port()

    @staticmethod
    def get_test_account() -> str:
        return ""

    @staticmethod
    def get_test_interface() -> list[str]:
        return ["lo"]

    @staticmethod
    def get_test_hostlist() -> list[str] | None:
        return None

    @staticmethod
    def get_batch_resources() -> dict[str, t.Any]:
        return {}

    @staticmethod
    def get_base_run_settings(exe: str, args: list[str], nodes: int = 1, ntasks: int = 1,
                              **kwargs: t.Any) -> RunSettings:
        return RunSettings(exe, args)

    get_run_settings = get_base_run_settings

    @staticmethod
    def choose_host(rs: RunSettings) -> str | None:
        return None


class DBUtils:
    @staticmethod
    def get_db_configs() -> dict[str, t.Any]:
        return {"enable_checkpoints": 1, "set_max_memory": "3gb", "set_eviction_strategy": "allkeys-lru",
                "set_max_clients": 100, "set_max_message_size": 2_147_483_648}

    @staticmethod
    def get_config_edit_method(db: t.Any, setting: str) -> t.Callable[..., None] | None:
        return {"enable_checkpoints": db.enable_checkpoints, "set_max_memory": db.set_max_memory,
                "set_eviction_strategy": db.set_eviction_strategy, "set_max_clients": db.set_max_clients,
                "set_max_message_size": db.set_max_message_size}.get(setting)


class FileUtils:
    @staticmethod
    def get_test_output_path(caller_function: str, caller_fspath: str) -> str:
        rel = os.path.relpath(os.path.splitext(caller_fspath)[0], HERE / "tests")
        return str(OUTPUT / rel / caller_function)

    @staticmethod
    def get_test_conf_path(filename: str) -> str:
        return str(CONFS / filename)

    @staticmethod
    def get_test_dir_path(dirname: str) -> str:
        return str(CONFS / dirname)

    @staticmethod
    def make_test_file(file_name: str, file_dir: str, file_content: str | None = None) -> str:
        os.makedirs(file_dir, exist_ok=True)
        path = os.path.join(file_dir, file_name)
        Path(path).write_text(file_content or "dummy\n" * 5)
        return path


@pytest.fixture(scope="session")
def wlmutils() -> type[WLMUtils]:
    return WLMUtils


@pytest.fixture
def dbutils() -> type[DBUtils]:
    return DBUtils


@pytest.fixture
def fileutils() -> type[FileUtils]:
    return FileUtils


@pytest.fixture
def test_dir(request: pytest.FixtureRequest) -> str:
    name = "".join(c for c in request.node.name.replace("[", ".") if c.isalnum() or c in "-._")
    path = FileUtils.get_test_output_path(name, str(request.path))
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


@pytest.fixture(autouse=True)
def environment_cleanup(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("SSDB", "SSKEYIN", "SSKEYOUT")):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def local_experiment(test_dir: str) -> t.Any:
    from smartsim import Experiment

    return Experiment("conformance", exp_path=test_dir, launcher="local")


@pytest.fixture(scope="session")
def mpi_app_path() -> None:
    return None





@dataclass
class DBConfiguration:
    name: str
    launcher: str
    num_nodes: int
    interface: str | list[str]
    hostlist: list[str] | None
    port: int


@dataclass
class PrepareDatabaseOutput:
    orchestrator: t.Any
    new_db: bool


_DATABASES: dict[str, t.Any] = {}


@pytest.fixture(scope="session")
def local_db() -> DBConfiguration:
    return DBConfiguration("local_db_fixture", "local", 1, "lo", None, _free_port())


@pytest.fixture(scope="session")
def single_db() -> DBConfiguration:
    return DBConfiguration("single_db_fixture", "local", 1, ["lo"], None, _free_port())


@pytest.fixture(scope="session")
def clustered_db() -> DBConfiguration:
    return DBConfiguration("clustered_db_fixture", "local", 3, ["lo"], None, _free_port())


@pytest.fixture
def register_new_db() -> t.Callable[[DBConfiguration], t.Any]:
    from smartsim import Experiment

    def register(config: DBConfiguration) -> t.Any:
        exp_path = OUTPUT / config.name
        exp_path.mkdir(parents=True, exist_ok=True)
        exp = Experiment(config.name, exp_path=str(exp_path), launcher=config.launcher)
        orc = exp.create_database(port=None, batch=False, interface=config.interface, hosts=config.hostlist,
                                  db_nodes=config.num_nodes)
        exp.generate(orc, overwrite=True)
        exp.start(orc)
        _DATABASES[config.name] = (exp, orc)
        return orc

    return register


@pytest.fixture
def prepare_db(register_new_db: t.Callable[[DBConfiguration], t.Any]) -> t.Callable[..., PrepareDatabaseOutput]:
    def prepare(config: DBConfiguration) -> PrepareDatabaseOutput:
        _exp, db = _DATABASES.get(config.name, (None, None))
        if db is not None and db.is_active():
            return PrepareDatabaseOutput(db, False)
        return PrepareDatabaseOutput(register_new_db(config), True)

    return prepare


class ColoUtils:
    @staticmethod
    def setup_test_colo(fileutils: type[FileUtils], db_type: str, exp: t.Any, application_file: str,
                        db_args: dict[str, t.Any], colo_settings: t.Any = None,
                        colo_model_name: str = "colocated_model", port: int | None = None,
                        on_wlm: bool = False) -> t.Any:
        script = fileutils.get_test_conf_path(application_file)
        if colo_settings is None:
            colo_settings = exp.create_run_settings(exe=sys.executable, exe_args=[script])
        model = exp.create_model(colo_model_name, colo_settings)
        if db_type in ("tcp", "deprecated"):
            db_args["port"] = port if port is not None else _free_port()
            db_args["ifname"] = "lo"
        if db_type == "uds":
            db_args["unix_socket"] = os.path.join(tempfile.gettempdir(),
                                                  f"{colo_model_name}_{uuid.uuid4().hex[:7]}.socket")
        {"tcp": model.colocate_db_tcp, "deprecated": model.colocate_db, "uds": model.colocate_db_uds}[db_type](
            **db_args)
        assert model.colocated
        return model


@pytest.fixture
def coloutils() -> type[ColoUtils]:
    return ColoUtils
