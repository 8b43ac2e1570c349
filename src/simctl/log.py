"""Logging, as the reference documents use it: ``get_logger(name)``.

``SIMCTL_LOG_LEVEL`` sets the level (default INFO).
"""

from __future__ import annotations

import logging
import os
import sys

_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def get_logger(name: str) -> logging.Logger:
    """A logger under ``simctl`` printing to stderr with a timestamp."""
    root = logging.getLogger("simctl")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("SIMCTL_LOG_LEVEL", "INFO").upper())
        root.propagate = False
    return root if name == "simctl" else root.getChild(name)
