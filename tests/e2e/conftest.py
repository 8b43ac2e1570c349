"""Fixtures of the end-to-end tests: the quick start, the documents' examples,
driver exit, the plugin authors' documents and examples, the lifecycle across
components.

Every test here runs real drivers, stores or jobs: all are marked ``slow``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _lifecycle_helpers import BIN, PY
from _markers import mark_slow_under

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_slow_under(HERE, items)


@pytest.fixture
def python_on_path(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make ``python`` on PATH this interpreter, as the documents' ``exe="python"`` expects."""
    monkeypatch.setenv("PATH", BIN + os.pathsep + os.environ.get("PATH", ""))
    return PY
