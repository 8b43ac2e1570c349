"""The documentation site builds from docs/ with MkDocs (Material) with
warnings as errors, and has the pages a user looks for: a tutorial, the
how-to pages, the API reference generated from the docstrings, coming from
SmartSim, shell completion and the changelog."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from _lifecycle_helpers import BIN, PY
from _paths import REPO

PAGES = ["index.html", "tutorial/index.html", "howto/sweeps/index.html", "howto/store/index.html",
         "howto/ml/index.html", "howto/schedulers/index.html", "howto/rerun/index.html",
         "howto/completion/index.html", "plugin-authors/index.html", "parameters/index.html",
         "reference/api/index.html", "reference/cli/index.html", "coming-from-smartsim/index.html",
         "changelog/index.html"]


def test_the_docs_build_strict_with_every_page(tmp_path: Path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([os.path.join(BIN, "mkdocs"), "build", "--strict", "--site-dir", str(site)],
                          cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    missing = [p for p in PAGES if not (site / p).is_file()]
    assert not missing
    api = (site / "reference/api/index.html").read_text()
    # generated from the docstrings, not written by hand
    assert "create_ensemble" in api and "set_hostlist" in api and "put_tensor" in api
    completion = re.sub(r"<[^>]+>", "", (site / "howto/completion/index.html").read_text())  # highlighting's spans
    assert "_SIMCTL_COMPLETE=bash_source simctl" in completion
    assert "the guides say" in (site / "coming-from-smartsim/index.html").read_text()


def test_the_tutorial_runs_as_written(tmp_path: Path):
    # its Python blocks, one after the other, are one driver script
    text = (REPO / "docs" / "tutorial.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)\n```", text, re.S))
    (tmp_path / "driver.py").write_text(code + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMCTL_", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/bin:/bin"
    proc = subprocess.run([PY, "driver.py"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Completed") == 4, proc.stdout
    # what the tutorial says the last member wrote
    assert (tmp_path / "study/sweep/sweep_3/sweep_3.out").read_text().strip() == "alpha = 0.2 ['-n', '20']"
    assert (tmp_path / "study/sweep/sweep_3/sim.py").is_symlink()
    assert (tmp_path / "study/sweep/simctl-params.json").is_file() and (tmp_path / "study/.simctl").is_dir()
