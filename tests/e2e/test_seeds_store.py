"""The reference documents' feature-store examples, run as written (issue 9,
"Done when"): the Model guide's producer/consumer example and the Ensemble
guide's key-prefixing example, each on the local launcher and on the real
test Slurm, with one server (``db_nodes=1``, as written) and with a 3-shard
Redis Cluster (``db_nodes=3``).

The scripts below are the documents' code blocks, in order, joined into the
files the documents name. Every change from the documents is marked ``# simctl:``
in the script and listed, with why, in the README ("The feature store"):

* imports: ``smartredis`` -> ``simctl`` / ``simctl.store``, ``smartsim`` -> ``simctl``;
* ``interface="ib0"`` -> ``"lo"`` (this machine has no InfiniBand);
* Model guide: ``exe_ex`` is defined (the guide never does); the consumer
  registers both producers (else ``set_data_source("producer_1")`` is refused);
  the consumer keeps what ``get_tensor`` returns in ``val1``/``val2`` (which it
  logs); ``exp.start(model_1, model_2, model_3, ...)`` names models that do not
  exist: the producers are started first, then the consumer (the Ensemble
  guide's order), so the consumer does not look before they wrote.

When the files are written, the test also replaces: ``/path/to/`` with the
directory holding the scripts, ``port=6379`` with a free port (tests share
the machine), ``db_nodes=1`` with ``db_nodes=3`` for the cluster runs and,
for the local runs only, ``launcher="auto"`` with ``launcher="local"`` (this
machine has Slurm, which ``auto`` would pick).

Each driver runs as ``python experiment.py`` in its own directory, as a user
runs it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
from _lifecycle_helpers import BIN, PY, wait_until
from slurm_helpers import require_slurm

# -- the Model guide: "Example" under key prefixing ------------------------------------------------

MODEL_PRODUCER_1 = """
from simctl import Client  # simctl: was `from smartredis import Client`
from simctl.store import log_data, LLInfo  # simctl: was `from smartredis import *`
import numpy as np

# Initialize a Client
client = Client(cluster=False)

# Create NumPy array
array = np.array([5, 6, 7, 8])
# Use SmartRedis client to place tensor in single sharded db
client.put_tensor("tensor", array)
"""

MODEL_PRODUCER_2 = """
from simctl import Client  # simctl: was `from smartredis import Client`
from simctl.store import log_data, LLInfo  # simctl: was `from smartredis import *`
import numpy as np

# Initialize a Client
client = Client(cluster=False)

# Create NumPy array
array = np.array([1, 2, 3, 4])
# Use SmartRedis client to place tensor in single sharded db
client.put_tensor("tensor", array)
"""

MODEL_CONSUMER = """
from simctl import Client  # simctl: was `from smartredis import Client`
from simctl.store import log_data, LLInfo  # simctl: was `from smartredis import *`
import numpy as np

# Initialize a Client
client = Client(cluster=False)

client.set_data_source("producer_1")
# Searching for key name: producer_1.tensor
val1 = client.get_tensor("tensor")  # simctl: the guide drops the result, then logs val1
client.set_data_source("producer_2")
# Searching for key name: producer_2.tensor
val2 = client.get_tensor("tensor")  # simctl: the guide drops the result, then logs val2

client.log_data(LLInfo, f"1: {val1}")
client.log_data(LLInfo, f"2: {val2}")
"""

MODEL_EXPERIMENT = """
import sys  # simctl: for exe_ex, which the guide uses without defining it
from simctl import Experiment  # simctl: was `from smartsim import Experiment`
from simctl.log import get_logger  # simctl: was `from smartsim.log import get_logger`

exe_ex = sys.executable  # simctl: the guide never defines exe_ex (the Ensemble guide does, so)
logger = get_logger("Experiment Log")
# Initialize the Experiment
exp = Experiment("getting-started", launcher="auto")

# Initialize a single sharded database
single_shard_db = exp.create_database(port=6379, db_nodes=1, interface="lo")  # simctl: was interface="ib0"
exp.generate(single_shard_db, overwrite=True)
exp.start(single_shard_db)

# Initialize a RunSettings object
producer_settings_1 = exp.create_run_settings(exe=exe_ex, exe_args="/path/to/producer_1.py")
producer_settings_1.set_nodes(1)
producer_settings_1.set_tasks_per_node(1)
producer_1 = exp.create_model("producer_1", producer_settings_1)

producer_1.enable_key_prefixing()

# Initialize a RunSettings object
producer_settings_2 = exp.create_run_settings(exe=exe_ex, exe_args="/path/to/producer_2.py")
producer_settings_2.set_nodes(1)
producer_settings_2.set_tasks_per_node(1)
producer_2 = exp.create_model("producer_2", producer_settings_2)
producer_2.enable_key_prefixing()

# Initialize a RunSettings object
consumer_settings = exp.create_run_settings(exe=exe_ex, exe_args="/path/to/consumer.py")
consumer_settings.set_nodes(1)
consumer_settings.set_tasks_per_node(1)
consumer = exp.create_model("consumer", consumer_settings)

consumer.disable_key_prefixing()
consumer.register_incoming_entity(producer_1)  # simctl: the guide never registers the producers,
consumer.register_incoming_entity(producer_2)  # simctl: so set_data_source would refuse their names

# simctl: was exp.start(model_1, model_2, model_3, block=True, summary=True): no such names, and the
# consumer must not look before the producers wrote
exp.start(producer_1, producer_2, block=True, summary=True)
exp.start(consumer, block=True, summary=True)

exp.stop(single_shard_db)
logger.info(exp.summary())
"""

# -- the Ensemble guide: "Example: Ensemble Key Prefixing" -----------------------------------------

ENSEMBLE_PRODUCER = """
from simctl import Client  # simctl: was `from smartredis import Client, log_data`
from simctl.store import log_data, LLInfo  # simctl: was `from smartredis import *`
import numpy as np

# Initialize a Client
client = Client(cluster=False)

# Create NumPy array
array = np.array([1, 2, 3, 4])
# Use SmartRedis client to place tensor in single sharded db
client.put_tensor("tensor", array)
"""

ENSEMBLE_CONSUMER = """
from simctl import Client  # simctl: was `from smartredis import Client, log_data`
from simctl.store import log_data, LLInfo  # simctl: was `from smartredis import *`

# Initialize a Client
client = Client(cluster=False)

client.set_data_source("producer_0")
val1 = client.poll_tensor("tensor", 100, 100)

client.set_data_source("producer_1")
val2 = client.poll_tensor("tensor", 100, 100)

client.log_data(LLInfo, f"producer_0.tensor was found: {val1}")
client.log_data(LLInfo, f"producer_1.tensor was found: {val2}")
"""

ENSEMBLE_EXPERIMENT = """
import numpy as np
from simctl import Client  # simctl: was `from smartredis import Client`
from simctl import Experiment  # simctl: was `from smartsim import Experiment`
from simctl.log import get_logger  # simctl: was `from smartsim.log import get_logger`
import sys

exe_ex = sys.executable
logger = get_logger("Experiment Log")
# Initialize the Experiment
exp = Experiment("getting-started", launcher="auto")

# Initialize a single sharded database
single_shard_db = exp.create_database(port=6379, db_nodes=1, interface="lo")  # simctl: was interface="ib0"
exp.generate(single_shard_db, overwrite=True)
exp.start(single_shard_db)
logger.info(exp.get_status(single_shard_db))

# Initialize a RunSettings object
ensemble_settings = exp.create_run_settings(exe=exe_ex, exe_args="/path/to/producer_script.py")

producer_ensemble = exp.create_ensemble("producer", run_settings=ensemble_settings, replicas=2)

producer_ensemble.enable_key_prefixing()

# Initialize a RunSettings object
model_settings = exp.create_run_settings(exe=exe_ex, exe_args="/path/to/consumer_script.py")
consumer_model = exp.create_model("consumer", model_settings)

exp.start(producer_ensemble, block=True, summary=True)

for model in producer_ensemble:
    consumer_model.register_incoming_entity(model)

exp.start(consumer_model, block=True, summary=True)

exp.stop(single_shard_db)
logger.info(exp.summary())
"""

EXAMPLES = {
    "model": {"producer_1.py": MODEL_PRODUCER_1, "producer_2.py": MODEL_PRODUCER_2, "consumer.py": MODEL_CONSUMER,
              "experiment.py": MODEL_EXPERIMENT},
    "ensemble": {"producer_script.py": ENSEMBLE_PRODUCER, "consumer_script.py": ENSEMBLE_CONSUMER,
                 "experiment.py": ENSEMBLE_EXPERIMENT},
}
#: what each example's consumer must write to consumer.out (after the "Default@HH-MM-SS:" context)
EXPECTED = {
    "model": ["1: [5 6 7 8]", "2: [1 2 3 4]"],
    "ensemble": ["producer_0.tensor was found: True", "producer_1.tensor was found: True"],
}
PRODUCERS = {"model": ["producer_1", "producer_2"], "ensemble": ["producer_0", "producer_1"]}


from _store_helpers import free_ports, port_free as _free  # noqa: E402


def write_example(where: Path, example: str, *, port: int, db_nodes: int, launcher: str) -> None:
    """Write the example's files into ``where`` with the run-time substitutions (see the module doc)."""
    for name, text in EXAMPLES[example].items():
        text = textwrap.dedent(text).lstrip().replace("/path/to/", f"{where}/").replace("port=6379", f"port={port}")
        if name == "experiment.py":
            assert "db_nodes=1" in text and 'launcher="auto"' in text
            text = text.replace("db_nodes=1", f"db_nodes={db_nodes}")
            if launcher != "auto":
                text = text.replace('launcher="auto"', f'launcher="{launcher}"')
        (where / name).write_text(text)


def run_example(where: Path, example: str, *, db_nodes: int, launcher: str, salloc: bool = False,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python experiment.py`` in ``where`` (under ``salloc`` when asked, else outside
    any Slurm allocation); fails the test if it fails."""
    port = free_ports(db_nodes)
    write_example(where, example, port=port, db_nodes=db_nodes, launcher=launcher)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SSDB", "SSKEY"))}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    cmd = [PY, "experiment.py"]
    if salloc:  # tasks for the shards and the two producers at once
        cmd = ["salloc", "-N1", "-n", str(db_nodes + 3), "-t", "00:15:00", "-J", "simctl-test-seeds", *cmd]
    proc = subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"the driver failed:\n{proc.stdout}\n{proc.stderr}"
    ports = list(range(port, port + db_nodes))
    wait_until(lambda: all(map(_free, ports)), f"the store's ports {ports} to be free again (the store stopped)",
               timeout=timeout)
    return proc


def check_run(where: Path, example: str, proc: subprocess.CompletedProcess[str], *, db_nodes: int,
              launcher: str) -> list[dict]:
    """The consumer found each producer's tensor; every job ended as it should; the store was the one asked for."""
    exp_path = where / "getting-started"
    manifest = json.loads((exp_path / ".simctl" / "manifest.json").read_text())
    # each model's output files are in its path, <exp_path>/[<ensemble>/]<name> (SmartSim's, issue 19)
    files = {j["name"]: (Path(j["out"]), Path(j["err"])) for j in manifest["jobs"]}
    assert files["consumer"][0] == exp_path / "consumer" / "consumer.out"
    lines = files["consumer"][0].read_text().splitlines()
    assert [re.sub(r"^Default@\d\d-\d\d-\d\d:", "", ln) for ln in lines] == EXPECTED[example], lines
    assert all(re.match(r"^Default@\d\d-\d\d-\d\d:", ln) for ln in lines), lines
    assert files["consumer"][1].read_text() == ""
    for name in PRODUCERS[example]:
        assert files[name][1].read_text() == "", name

    assert manifest["launcher"] == launcher
    status = {j["name"]: j["status"] for j in manifest["jobs"]}
    assert {n: status[n] for n in [*PRODUCERS[example], "consumer"]} == dict.fromkeys(
        [*PRODUCERS[example], "consumer"], "Completed")
    shards = [j for j in manifest["jobs"] if j["entity_type"] == "Orchestrator"]
    assert sorted(j["name"] for j in shards) == [f"orchestrator_{i}" for i in range(db_nodes)]
    assert {j["status"] for j in shards} == {"Cancelled"}  # exp.stop(single_shard_db)
    store = json.loads((exp_path / "orchestrator" / "store.json").read_text())
    assert store["cluster"] is (db_nodes >= 3) and len(store["addresses"]) == db_nodes
    assert "consumer" in proc.stderr and "producer" in proc.stderr  # logger.info(exp.summary())
    return manifest["jobs"]


# -- local -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("db_nodes", [1, 3], ids=["one-server", "cluster"])
@pytest.mark.parametrize("example", ["model", "ensemble"], ids=["model-guide", "ensemble-guide"])
def test_the_documents_producer_consumer_examples_run_on_local(tmp_path, example, db_nodes):
    proc = run_example(tmp_path, example, db_nodes=db_nodes, launcher="local")
    check_run(tmp_path, example, proc, db_nodes=db_nodes, launcher="local")


def test_the_model_guides_consumer_as_written_is_refused_its_data_source_with_the_registered_names(tmp_path):
    """What the adaptation fixes: without register_incoming_entity the consumer
    has no data sources, and set_data_source("producer_1") says so."""
    write_example(tmp_path, "model", port=free_ports(1), db_nodes=1, launcher="local")
    driver = tmp_path / "experiment.py"
    text = driver.read_text()
    driver.write_text(re.sub(r"consumer\.register_incoming_entity\(producer_\d\).*\n", "", text))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SSDB", "SSKEY"))}
    proc = subprocess.run([PY, "experiment.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr  # the driver runs; the consumer fails
    err = (tmp_path / "getting-started" / "consumer" / "consumer.err").read_text()
    assert "set_data_source: 'producer_1' is not a registered data source" in err
    assert (tmp_path / "getting-started" / "consumer" / "consumer.out").read_text() == ""
    manifest = json.loads((tmp_path / "getting-started" / ".simctl" / "manifest.json").read_text())
    assert {j["name"]: j["status"] for j in manifest["jobs"]}["consumer"] == "Failed"


# -- the test Slurm --------------------------------------------------------------------------------


@pytest.mark.slurm
@pytest.mark.parametrize("db_nodes", [1, 3], ids=["one-server", "cluster"])
@pytest.mark.parametrize("example", ["model", "ensemble"], ids=["model-guide", "ensemble-guide"])
def test_the_documents_producer_consumer_examples_run_on_slurm_inside_an_allocation(tmp_path, example, db_nodes):
    """launcher="auto" in a driver run under ``salloc -n N``: the store's shards
    and the models are srun steps of that allocation. The Model guide's
    set_nodes(1) + set_tasks_per_node(1) gives its step ``--ntasks=1``: without
    it the step would inherit SLURM_NTASKS=N (srun ignores --ntasks-per-node
    then), wait for N free CPUs and run N copies of each producer."""
    require_slurm()
    proc = run_example(tmp_path, example, db_nodes=db_nodes, launcher="auto", salloc=True, timeout=900)
    jobs = check_run(tmp_path, example, proc, db_nodes=db_nodes, launcher="slurm")
    assert all(j["job_id"].startswith("step:") for j in jobs), [j["job_id"] for j in jobs]


@pytest.mark.slurm
@pytest.mark.parametrize("db_nodes", [1, 3], ids=["one-server", "cluster"])
@pytest.mark.parametrize("example", ["model", "ensemble"], ids=["model-guide", "ensemble-guide"])
def test_the_documents_examples_run_on_slurm_as_batch_jobs(tmp_path, example, db_nodes):
    """launcher="auto" outside any allocation: the store and each model are
    batch jobs of their own. A model's set_nodes(1) says where its step runs:
    its batch job asks for the step's tasks, not for a whole node (which the
    store's job, on the one-node test Slurm, would never leave)."""
    require_slurm()
    proc = run_example(tmp_path, example, db_nodes=db_nodes, launcher="auto", timeout=900)
    jobs = check_run(tmp_path, example, proc, db_nodes=db_nodes, launcher="slurm")
    assert not any(j["job_id"].startswith("step:") for j in jobs), [j["job_id"] for j in jobs]
    batch_jobs = {j["job_id"].rpartition(":")[0] for j in jobs}
    assert len(batch_jobs) == len(jobs), batch_jobs  # every shard and every model: a batch job of its own
