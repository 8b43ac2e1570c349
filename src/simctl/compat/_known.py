"""The stores this process started or reconnected to through the SmartSim
layer, so that a driver's own ``smartredis.Client(address=db.get_address()[0])``
logs in without being given the password, as SmartSim's (password-less) stores
let it: the driver that started a store knows its admin's credentials. A
member process has its own in its environment and never looks here."""

from __future__ import annotations

import weakref
from typing import Any

_stores: list[weakref.ref[Any]] = []


def remember(orc: Any) -> None:
    """Remember ``orc`` (a :class:`simctl.Orchestrator`) while it exists."""
    _stores[:] = [r for r in _stores if r() is not None] + [weakref.ref(orc)]


def credentials(address: str | list[str] | None) -> tuple[str | None, str | None]:
    """(user, password) of a remembered store serving one of ``address``'s addresses, else (None, None)."""
    wanted = set(address.split(",") if isinstance(address, str) else address or ())
    for ref in reversed(_stores):
        orc = ref()
        try:
            if orc is not None and wanted & set(orc.get_address()):
                return orc.username, orc.password
        except Exception:  # not started yet, or stopped: not the one
            continue
    return None, None
