"""Rule of the house: ``simctl.core`` never imports ``simctl.plugins``.

Checked twice: statically (every import statement and every module-name
string in the core's source, relative imports resolved) and at run time (a
fresh interpreter importing every core module loads no plugin module)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import simctl.core

CORE = Path(simctl.core.__file__).resolve().parent
FORBIDDEN = "simctl.plugins"


def _module_name(path: Path) -> str:
    rel = path.relative_to(CORE.parent.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports of ``simctl.plugins`` (absolute, relative, or by name in a string)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []

    def bad(name: str) -> bool:
        return name == FORBIDDEN or name.startswith(FORBIDDEN + ".")

    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            targets = [node.value.split(":")[0]]  # "simctl.plugins.x" or "simctl.plugins.x:obj"
        found += [f"{module}:{node.lineno}: {t}" for t in targets if bad(t)]
    return found


def test_the_scanner_catches_every_form():
    mod = "simctl.core.thing"
    assert violations("import simctl.plugins.launchers.local", mod)
    assert violations("from simctl.plugins import strategies", mod)
    assert violations("from simctl import plugins", mod)
    assert violations("from .. import plugins", mod)
    assert violations("from ..plugins.strategies import all_perm", mod)
    assert violations("importlib.import_module('simctl.plugins.strategies.random')", mod)
    assert violations("from . import plugins", "simctl.core", is_package=True) == []
    assert violations("from . import plugins, entities", mod) == []  # simctl.core.plugins is the core's own
    assert violations("from .plugins import make_plugins", mod) == []
    assert violations("import simctl_plugins_extra\nx = 'simctl.pluginsX'", mod) == []


def test_core_never_imports_plugins_statically():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 10
    found = []
    for path in files:
        found += violations(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")
    assert not found, "simctl.core imports simctl.plugins:\n" + "\n".join(found)


@pytest.mark.slow
def test_core_never_imports_plugins_at_run_time():
    code = f"""
import importlib, pkgutil, sys
import simctl.core
for info in pkgutil.walk_packages(simctl.core.__path__, "simctl.core."):
    importlib.import_module(info.name)
bad = sorted(m for m in sys.modules if m == "{FORBIDDEN}" or m.startswith("{FORBIDDEN}."))
print(len([m for m in sys.modules if m.startswith("simctl.core.")]))
assert not bad, bad
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) > 10  # it did import the core modules
