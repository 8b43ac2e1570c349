"""Logging, as the reference documents use it: ``get_logger(name)``.

``SIMCTL_LOG_LEVEL`` sets the level (default INFO).
"""

from __future__ import annotations

import logging
import os
import sys

_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record, so
    redirecting stderr (``contextlib.redirect_stderr``, notebooks, test
    capture) after the first ``get_logger`` call still works."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def get_logger(name: str) -> logging.Logger:
    """A logger under ``simctl`` printing to stderr with a timestamp."""
    root = logging.getLogger("simctl")
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
        root.addHandler(handler)
        level = os.environ.get("SIMCTL_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        try:
            root.setLevel(int(level) if level.isdigit() else level)
        except ValueError:  # a typo in the variable must not break every import of simctl
            root.setLevel(logging.INFO)
            root.warning("SIMCTL_LOG_LEVEL=%r is not a logging level (DEBUG, INFO, WARNING, ERROR, "
                         "CRITICAL or a number); using INFO", level)
        root.propagate = False
    return root if name == "simctl" else root.getChild(name)
