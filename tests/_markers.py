"""Marking a layer's tests (used by the layers' conftest.py files)."""

from __future__ import annotations

from pathlib import Path

import pytest


def mark_slow_under(directory: Path, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every collected test that lives under ``directory``
    (``pytest_collection_modifyitems`` sees the whole session's tests)."""
    for item in items:
        if directory in item.path.parents:
            item.add_marker(pytest.mark.slow)
