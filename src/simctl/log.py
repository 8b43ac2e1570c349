"""Logging, as the reference documents use it: ``get_logger(name)``.

As a library, simctl only adds one handler to its ``simctl`` logger,
:data:`UNHEARD`, and leaves output to the application: importing simctl
changes no logging setup, and the user's own applies (records propagate to
the root logger). A driver script opts in to simctl's messages on stderr by
calling :func:`get_logger` (the reference documents' helper) or
:func:`configure_logging` (level from ``SIMCTL_LOG_LEVEL``, default INFO).

While the application has set up no logging at all (no handler on the root
logger, none of its own on ``simctl``), simctl's warnings and errors would
be lost: :data:`UNHEARD` turns them into :class:`simctl.SimctlWarning`
warnings (shown on stderr by Python, silenced with
``warnings.filterwarnings("ignore", category=simctl.SimctlWarning)`` or
``logging.getLogger("simctl").removeHandler(simctl.log.UNHEARD)``).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import TextIO

from .core.errors import SimctlWarning

_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_ROOT = logging.getLogger("simctl")


class _Unheard(logging.Handler):
    """simctl's WARNING and ERROR records as :class:`SimctlWarning` warnings,
    only while nothing else would show them (no logging set up)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        others = [h for h in _ROOT.handlers if h is not self]
        if others or (_ROOT.propagate and logging.getLogger().handlers):
            return  # the application's logging shows it
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        try:
            warnings.warn_explicit(text, SimctlWarning, record.pathname, record.lineno, module=record.module)
        except Exception:  # a warnings filter set to "error" must not break the code that logged: said plainly
            print(f"simctl: {text}", file=sys.stderr, flush=True)


#: the handler that makes simctl's warnings heard while the application set up no logging
UNHEARD = _Unheard()
_ROOT.addHandler(UNHEARD)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record, so
    redirecting stderr (``contextlib.redirect_stderr``, notebooks, test
    capture) after :func:`configure_logging` still works."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def logger(name: str) -> logging.Logger:
    """The logger ``simctl.<name>``, as simctl's own modules use it (no output
    of its own: the application decides)."""
    return _ROOT if name == "simctl" else _ROOT.getChild(name)


def get_logger(name: str) -> logging.Logger:
    """The reference documents' helper for driver scripts: the logger
    ``simctl.<name>``, with simctl's messages printed to stderr
    (:func:`configure_logging`: calling it is the script's opt-in)."""
    configure_logging()
    return logger(name)


def configure_logging(level: str | int | None = None) -> logging.Logger:
    """Opt in to simctl's messages on stderr with a timestamp (idempotent).
    ``level`` defaults to ``SIMCTL_LOG_LEVEL``, else INFO."""
    if any(isinstance(h, _StderrHandler) for h in _ROOT.handlers) and level is None:
        return _ROOT
    if not any(isinstance(h, _StderrHandler) for h in _ROOT.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
        _ROOT.addHandler(handler)
        _ROOT.propagate = False  # printed once, here, not again by a root handler
    raw = level if level is not None else (os.environ.get("SIMCTL_LOG_LEVEL", "INFO").strip().upper() or "INFO")
    try:
        _ROOT.setLevel(int(raw) if isinstance(raw, str) and raw.isdigit() else raw)
    except (ValueError, TypeError):  # a typo in the variable must not break the program
        _ROOT.setLevel(logging.INFO)
        _ROOT.warning("SIMCTL_LOG_LEVEL=%r is not a logging level (DEBUG, INFO, WARNING, ERROR, "
                      "CRITICAL or a number); using INFO", raw)
    return _ROOT
