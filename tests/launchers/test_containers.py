"""Containers (``RunSettings(container=...)``): a model's program run in a real
podman container, on an image built here from this machine's own files (no
registry); Singularity and Apptainer by their command line (neither can be
installed here).

This machine runs inside a container itself: podman's default OCI runtime
(crun) refuses its hybrid cgroups and its default ulimits are above what the
machine allows, so the test gives podman a ``containers.conf``
(``CONTAINERS_CONF``) choosing runc and ulimits it may set; that is site
configuration, not simctl's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import simctl

CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


def _rootfs_tar(tmp: Path) -> Path:
    """A root file system with this machine's /bin/dash (and the libraries it
    loads) as /bin/sh, and a file only the image has."""
    root = tmp / "rootfs"
    files = ["/bin/dash"]
    ldd = subprocess.run(["ldd", "/bin/dash"], capture_output=True, text=True, check=True).stdout
    files += [w for line in ldd.splitlines() for w in line.split() if w.startswith("/")]
    for f in files:
        dest = root / f.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(f), dest)
    (root / "bin" / "sh").symlink_to("dash")
    (root / "in-the-image").write_text("made from files of this machine\n")
    tar = tmp / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".")
    return tar


@pytest.fixture
def image(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A podman image imported from a tarball, and the environment podman needs here."""
    podman = shutil.which("podman")
    assert podman, "podman is not installed: scripts/setup.sh --dev installs it"
    conf = tmp_path / "containers.conf"
    conf.write_text(CONF)
    env = {"CONTAINERS_CONF": str(conf)}
    name = f"localhost/simctl-test-{uuid.uuid4().hex[:8]}:1"
    subprocess.run([podman, "import", str(_rootfs_tar(tmp_path)), name], check=True, capture_output=True,
                   env={**os.environ, **env})
    yield name, env
    subprocess.run([podman, "rmi", "-f", name], capture_output=True, env={**os.environ, **env})


def test_a_model_runs_in_a_podman_container_with_its_directory_binds_and_variables(
        tmp_path: Path, image: tuple[str, dict[str, str]]) -> None:
    name, env = image
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.txt").write_text("bound from the host\n")
    exp = simctl.Experiment("c", exp_path=str(tmp_path / "exp"), launcher="local")
    # the image has a shell and nothing else: its built-ins read the files
    script = ('show() { read -r line < "$1"; echo "$line"; }; show /in-the-image; show /mnt/in/input.txt; '
              'echo "var=$SIMCTL_IN_CONTAINER"; pwd; echo written-inside > out.txt')
    rs = exp.create_run_settings("/bin/sh", ["-c", script], env_vars={**env, "SIMCTL_IN_CONTAINER": "passed"},
                                 container=simctl.Podman(name, mount={str(data): "/mnt/in"}))
    model = exp.create_model("boxed", rs)
    exp.generate(model)
    preview = exp.preview(model, show=False)
    assert f"podman run --rm --network=host -v {model.path}:{model.path} -v {data}:/mnt/in -w {model.path}" \
        in preview and f"-e SIMCTL_IN_CONTAINER {name} /bin/sh -c" in preview
    exp.start(model, block=True)
    err = Path(model.path, "boxed.err").read_text()
    assert exp.get_status(model)[0] is simctl.Status.COMPLETED, err
    assert Path(model.path, "boxed.out").read_text().splitlines() == [
        "made from files of this machine", "bound from the host", "var=passed", model.path]
    # the run directory was bound: what the program wrote is on the host
    assert Path(model.path, "out.txt").read_text() == "written-inside\n"
    assert not Path("/in-the-image").exists()  # the marker came from the image, not from the host


def test_singularity_and_apptainer_command_lines_by_preview(tmp_path: Path) -> None:
    exp = simctl.Experiment("c", exp_path=str(tmp_path / "exp"), launcher="local")
    rs = exp.create_run_settings(sys.executable, ["-V"], container=simctl.Singularity(
        "/images/sim.sif", args="--nv --cleanenv", mount=["/scratch", "/data:/in"]))
    model = exp.create_model("s", rs)
    exp.generate(model)
    preview = exp.preview(model, show=False)
    assert (f"singularity exec --pwd {model.path} --nv --cleanenv --bind {model.path},/scratch,/data:/in "
            f"/images/sim.sif {sys.executable} -V") in preview
    rs.container = simctl.Apptainer("/images/sim.sif", working_directory="/work")
    assert f"apptainer exec --pwd /work --bind {model.path}:/work /images/sim.sif {sys.executable} -V" \
        in exp.preview(model, show=False)


def test_bad_container_arguments_are_refused_before_anything_runs(tmp_path: Path) -> None:
    exp = simctl.Experiment("c", exp_path=str(tmp_path / "exp"), launcher="local")
    with pytest.raises(simctl.ConfigError, match=r"container image 3 \(int\) must be a non-empty str"):
        simctl.Podman(3)  # type: ignore[arg-type]
    with pytest.raises(simctl.ConfigError, match=r"container mount 5 \(int\) has the wrong type"):
        simctl.Singularity("img", mount=5)
    with pytest.raises(simctl.ConfigError, match="must be a container"):
        exp.create_run_settings("true", container="docker://alpine")
    boxed = exp.create_run_settings("true", run_command="orterun", container=simctl.Podman("img"))
    with pytest.raises(simctl.ConfigError, match="cannot be part of an MPMD launch"):
        boxed.make_mpmd(exp.create_run_settings("true", run_command="orterun"))
