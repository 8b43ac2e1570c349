"""The README's Python code blocks run as written (as pytest's own docs are
checked): each ```python block is a driver script, run in a directory of its
own with this repository's interpreter and a PATH without it, as on a Debian
machine outside a virtual environment (where there is no ``python``). A
block that is only a fragment (it uses names a real script would define) is
marked by an HTML comment on the line before it, ``<!-- not run: why -->``;
the fragments are counted, so marking one more is a change made on purpose."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from _lifecycle_helpers import PY
from _paths import REPO

README = REPO / "README.md"
#: how many of the README's Python blocks are fragments (not run), and how many run
FRAGMENTS = 4
RUN = 1

_BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.S)
_NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<why>\S.*?)\s*-->")


def blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line, code, why it is not run or None) for every ```python block."""
    out = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start("code"))  # 1-based line of the fence
        marked = _NOT_RUN.search(m.group("before"))
        out.append((line, m.group("code"), marked.group("why") if marked else None))
    return out


ALL = blocks(README.read_text())


def test_the_readme_blocks_are_counted():
    fragments = [(line, why) for line, _, why in ALL if why]
    assert len(fragments) == FRAGMENTS, f"fragments (README line, reason): {fragments}"
    assert len(ALL) - len(fragments) == RUN


@pytest.mark.parametrize("line, code", [(line, code) for line, code, why in ALL if not why],
                         ids=[f"README.md:{line}" for line, _, why in ALL if not why])
def test_a_readme_block_runs_as_written(tmp_path: Path, line: int, code: str):
    (tmp_path / "driver.py").write_text(code + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMCTL_", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/bin:/bin"  # no venv, no pyenv: `python` may not exist
    proc = subprocess.run([PY, "driver.py"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"README.md line {line}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    # a summary table may be printed: no job in it failed
    assert not re.search(r"\b(Failed|Cancelled|Unknown)\b", proc.stdout), proc.stdout


def test_the_readme_starts_with_the_quick_start_then_install():
    """The quick start's two commands first (a rule of the house), the pip-only route right after."""
    text = README.read_text()
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert sections[:2] == ["Quick start", "Install"]
    quick = text[text.index("## Quick start"):text.index("## Install")]
    assert re.findall(r"^bash scripts/\S+", quick, re.M) == ["bash scripts/example.sh", "bash scripts/test.sh"]
    assert "du -sh .venv" in quick  # the quick start's cost, measured
    install = text[text.index("## Install"):text.index("## Using it")]
    assert "pip install 'simctl-hpc[valkey]'" in install  # the pip-only route: a store without root
    # SmartSim's guides are named as such; their tables live in docs/coming-from-smartsim.md
    assert "the documents" not in text.lower()
