"""The client's logging, as SmartRedis has it: ``log_data(level, data)`` and
``Client.log_data`` write ``<context>@HH-MM-SS:<data>`` lines when ``level``
passes the threshold ``SR_LOG_LEVEL`` (quiet, info, debug, developer; info by
default), to standard output or to the file ``SR_LOG_FILE``."""

from __future__ import annotations

import os
import sys
import time
from enum import IntEnum
from typing import Any

from ..core.errors import ConfigError

__all__ = ["LLDebug", "LLDeveloper", "LLInfo", "LLQuiet", "LogLevel", "log_data"]

#: the threshold's variable, and the file's
LEVEL_ENV = "SR_LOG_LEVEL"
FILE_ENV = "SR_LOG_FILE"


class LogLevel(IntEnum):
    """How much ``log_data`` writes; ``SR_LOG_LEVEL`` (quiet, info, debug,
    developer) picks the threshold, info by default."""

    LLQuiet = 1
    LLInfo = 2
    LLDebug = 3
    LLDeveloper = 4


LLQuiet, LLInfo, LLDebug, LLDeveloper = LogLevel.LLQuiet, LogLevel.LLInfo, LogLevel.LLDebug, LogLevel.LLDeveloper


def threshold() -> LogLevel:
    """The level ``SR_LOG_LEVEL`` sets."""
    name = os.environ.get(LEVEL_ENV, "info").strip().lower()
    return {"quiet": LLQuiet, "none": LLQuiet, "debug": LLDebug, "developer": LLDeveloper}.get(name, LLInfo)


def write_log(context: str, level: Any, data: Any) -> None:
    """Write ``<context>@HH-MM-SS:<data>`` if ``level`` passes the threshold."""
    try:
        lvl = LogLevel(level)
    except ValueError:
        raise ConfigError(f"log_data: level must be one of LLQuiet, LLInfo, LLDebug, LLDeveloper, got "
                          f"{level!r}") from None
    limit = threshold()
    if limit == LLQuiet or lvl > limit:
        return
    line = f"{context}@{time.strftime('%H-%M-%S')}:{data}\n"
    path = os.environ.get(FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
        return
    sys.stdout.write(line)
    sys.stdout.flush()


def log_data(*args: Any) -> None:
    """``log_data(level, data)`` or ``log_data(context, level, data)``: write
    ``<context>@HH-MM-SS:<data>`` to stdout (or the file ``SR_LOG_FILE``) when
    ``level`` is at or below the ``SR_LOG_LEVEL`` threshold. Context defaults to "Default"."""
    if len(args) == 2:
        write_log("Default", *args)
    elif len(args) == 3:
        write_log(str(args[0]), args[1], args[2])
    else:
        raise ConfigError(f"log_data takes (level, data) or (context, level, data), got {len(args)} arguments")
