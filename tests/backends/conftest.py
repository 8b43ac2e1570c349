"""Fixtures of the ML backends' tests (real runtimes: torch, onnxruntime, tensorflow, LiteRT).

Every test here loads a heavy runtime or starts a store: all are marked ``slow``."""

from __future__ import annotations

from pathlib import Path

import pytest
from _markers import mark_slow_under

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_slow_under(HERE, items)
