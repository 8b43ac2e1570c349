"""Tests of the SmartSim compatibility layer (``simctl.compat``, ``import
smartsim`` / ``import smartredis`` through the import hook). Every test here
starts interpreters, drivers or stores: all are marked ``slow``."""

from __future__ import annotations

from pathlib import Path

import pytest
from _markers import mark_slow_under

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_slow_under(HERE, items)
