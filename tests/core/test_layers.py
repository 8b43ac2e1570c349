"""The layers of the package, as tests: bottom to top, core, ml, store,
workflow, the face (``simctl/__init__.py``), then plugins, the CLI and the
SmartSim compatibility layer (``simctl.compat``). A layer imports only those
below it; plugins import only the face, as a third party does; the
compatibility layer imports the face and the public modules a user imports
(:data:`PUBLIC_MODULES`). Every import counts: at module level, inside a function, or under
``TYPE_CHECKING``; and an import inside a function says why it waits (a
comment on its line or the line above: start-up cost)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import simctl

PACKAGE = Path(simctl.__file__).resolve().parent

#: layer -> the layers it may import (itself included)
ALLOWED = {
    "core": {"core"},
    "ml": {"core", "ml"},
    "store": {"core", "ml", "store"},
    "workflow": {"core", "ml", "store", "workflow"},
    "face": {"core", "ml", "store", "workflow", "face"},
    "plugins": {"face", "plugins"},
    "cli": {"core", "ml", "store", "workflow", "face", "cli"},
    "compat": {"face", "compat"},
}

#: modules outside the face that users import by name (the documents do): the compatibility layer may too
PUBLIC_MODULES = {"simctl.log", "simctl.ml.tf", "simctl.ml.torch"}


def layer(module: str) -> str:
    """The layer of a ``simctl`` module."""
    parts = module.split(".")
    if parts == ["simctl"]:
        return "face"
    top = parts[1]
    if top == "log":
        return "core"
    if top in ("core", "ml", "store", "workflow", "plugins", "cli", "compat"):
        return top
    raise AssertionError(f"{module} is in no layer: add it to one")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str, bool]]:
    """(line, imported simctl module, inside a function) for every import of a simctl module."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(n) for n in ast.walk(node) if n is not node}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # "from simctl import plugins" imports a module; "from simctl import Model" a name of the face
            names = [prefix]
            if not node.module or node.level:
                names = [f"{prefix}.{a.name}" if (PACKAGE.parent / f"{prefix}.{a.name}".replace(".", "/")).exists()
                         or (PACKAGE.parent / (f"{prefix}.{a.name}".replace(".", "/") + ".py")).exists()
                         else prefix for a in node.names]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            # a module named in a string, for importlib: "simctl.plugins.x" or "simctl.plugins.x:obj"
            text = node.value.split(":")[0]
            if text.startswith("simctl.") and all(p.isidentifier() for p in text.split(".")):
                names = [text]
        for name in names:
            if name == "simctl" or name.startswith("simctl."):
                yield node.lineno, name, id(node) in inside and not isinstance(node, ast.Constant)


def all_imports() -> Iterator[tuple[str, int, str, bool, list[str]]]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    for path in files:
        source = path.read_text(encoding="utf-8")
        mod = module_name(path)
        for line, name, lazy in imports(source, mod, path.name == "__init__.py"):
            yield mod, line, name, lazy, source.splitlines()


def test_the_scanner_reads_every_form():
    found = list(imports("import simctl.core.plan\nfrom ..store import client\nfrom . import x\n"
                         "def f():\n    from simctl import Model\n", "simctl.workflow.model", False))
    assert found == [(1, "simctl.core.plan", False), (2, "simctl.store.client", False),
                     (3, "simctl.workflow", False), (5, "simctl", True)]
    assert list(imports("importlib.import_module('simctl.plugins.strategies.random')", "simctl.core.x", False)) \
        == [(1, "simctl.plugins.strategies.random", False)]
    assert layer("simctl") == "face" and layer("simctl.log") == "core" and layer("simctl.cli") == "cli"
    assert layer("simctl.compat.smartsim.settings") == "compat"


def test_no_import_runs_up_a_layer():
    bad = [f"{mod}:{line} imports {name} ({layer(mod)} may import only {sorted(ALLOWED[layer(mod)])})"
           for mod, line, name, _, _ in all_imports()
           if layer(name) not in ALLOWED[layer(mod)] and not (mod.startswith(name + ".") or mod == name)
           and not (layer(mod) == "compat" and name in PUBLIC_MODULES)]
    assert not bad, "imports that run up a layer:\n" + "\n".join(bad)


def test_the_compat_layer_imports_only_the_face_and_public_modules():
    found = [(mod, name) for mod, _, name, _, _ in all_imports() if layer(mod) == "compat"]
    assert found, "the compatibility layer imports simctl"
    bad = [f"{mod} imports {name}" for mod, name in found
           if name != "simctl" and layer(name) != "compat" and name not in PUBLIC_MODULES]
    assert not bad, "the SmartSim layer imports simctl's insides:\n" + "\n".join(bad)


def test_plugins_import_only_the_face():
    bad = [f"{mod}:{line} imports {name}" for mod, line, name, _, _ in all_imports()
           if layer(mod) == "plugins" and name != "simctl" and layer(name) != "plugins"]
    assert not bad, "built-in plugins import what a third party could not:\n" + "\n".join(bad)


def test_every_import_inside_a_function_says_why():
    bad = []
    for mod, line, _name, lazy, lines in all_imports():
        if lazy and "#" not in lines[line - 1] and not lines[line - 2].strip().startswith("#"):
            bad.append(f"{mod}:{line}: {lines[line - 1].strip()}")
    assert not bad, ("imports inside functions without a comment saying why they wait (start-up cost):\n"
                     + "\n".join(bad))


@pytest.mark.parametrize("mod", ["simctl.core.plan", "simctl.store.use"])
def test_the_contract_fails_on_an_upward_import(mod):
    """The rule catches what today's main had: the core importing the store, the store the face."""
    target = "simctl.store.preload" if mod.startswith("simctl.core") else "simctl"
    found = [(m, n) for _, n, _ in imports(f"import {target}\n", mod, False) for m in [mod]]
    assert found and layer(target) not in ALLOWED[layer(mod)]


@pytest.mark.slow
def test_importing_the_core_loads_nothing_above_it():
    """At run time too: a fresh interpreter importing every core module loads
    no store, workflow or plugin module (the face, ``simctl/__init__``, is
    loaded as the package's parent and is not counted)."""
    code = """
import importlib, pkgutil, sys
import simctl.core
before = set(sys.modules)
for info in pkgutil.walk_packages(simctl.core.__path__, "simctl.core."):
    importlib.import_module(info.name)
print(len([m for m in sys.modules if m.startswith("simctl.core.")]))
print(" ".join(sorted(m for m in set(sys.modules) - before if m.startswith(("simctl.store", "simctl.workflow",
                                                                             "simctl.plugins")))))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    count, _, loaded = proc.stdout.partition("\n")
    assert int(count) > 20  # it did import the core modules
    assert loaded.strip() == ""
