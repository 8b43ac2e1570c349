"""SmartSim's own documentation examples, taken from a SmartSim snapshot at
test time (never copied here) and run unchanged: ``import smartsim`` and
``import smartredis`` resolve to simctl's layer, so "imports changed" is
"nothing changed". The examples listed are those that run on this machine;
docs/coming-from-smartsim.md says why each of the others cannot."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

#: a SmartSim git directory (bare is fine)
REPO = os.environ.get("SMARTSIM_REPO", "/work/.mirror/CrayLabs+SmartSim/repo")
DOCS = "doc/tutorials/doc_examples"
RUN = [
    "ensemble_doc_examples/param_expansion_1.py",
    "ensemble_doc_examples/param_expansion_2.py",
    "ensemble_doc_examples/replicas_1.py",
    "ensemble_doc_examples/replicas_2.py",
    "model_doc_examples/model_init.py",
    "model_doc_examples/prefix_data.py",
    "model_doc_examples/string_script.py",
    "model_doc_examples/in_mem_script.py",
]


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmartSim's doc examples, exported from the snapshot."""
    if not os.path.isdir(REPO):
        pytest.fail(f"no SmartSim snapshot at {REPO}: set SMARTSIM_REPO to a SmartSim git directory")
    out = tmp_path_factory.mktemp("smartsim-docs")
    archive = subprocess.run(["git", "-C", REPO, "archive", "HEAD", DOCS], capture_output=True, check=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(out, filter="data")
    return out / DOCS


@pytest.mark.parametrize("example", RUN)
def test_a_smartsim_doc_example_runs_unchanged(examples: Path, example: str):
    script = examples / example
    assert "from smartsim import" in script.read_text()  # it is SmartSim's, as written
    env = {**os.environ, "SIMCTL_SMARTSIM": "force"}
    proc = subprocess.run([sys.executable, script.name], cwd=script.parent, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
