"""``smartsim.log``: ``get_logger`` and ``log_to_file`` over simctl's logging."""

from __future__ import annotations

import logging

from simctl.log import get_logger


def log_to_file(filename: str, log_level: str = "debug") -> None:
    """Also write simctl's log records to ``filename`` (SmartSim's ``log_to_file``)."""
    handler = logging.FileHandler(filename)
    handler.setLevel(log_level.upper())
    logging.getLogger("simctl").addHandler(handler)


__all__ = ["get_logger", "log_to_file"]
