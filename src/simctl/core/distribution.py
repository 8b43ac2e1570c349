"""The name simctl is installed under, and the install hints built from it.

The import name and the command are ``simctl``; the distribution (what
``pip install`` takes) is :data:`NAME`, because ``simctl`` on PyPI is an
unrelated package with its own top-level ``simctl`` module.
"""
from __future__ import annotations

import shlex

#: the distribution name on PyPI (pyproject.toml's ``[project] name``)
NAME = "simctl-hpc"


def pip_install(requirement: str) -> str:
    """``pip install REQ`` as a line to paste into any shell: a requirement with
    an extra is quoted (``pip install 'simctl-hpc[onnx]'``; zsh globs brackets)."""
    return f"pip install {shlex.quote(requirement)}"


def extra(name: str) -> str:
    """The install line for one of simctl's extras: ``pip install 'simctl-hpc[NAME]'``."""
    return pip_install(f"{NAME}[{name}]")
