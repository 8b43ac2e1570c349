"""Fixtures of the launchers' tests (local, Slurm, PBS, LSF, the scheduler commands).

Every test here starts real processes or scheduler jobs: all are marked ``slow``."""

from __future__ import annotations

from pathlib import Path

import pytest
from _markers import mark_slow_under

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_slow_under(HERE, items)
