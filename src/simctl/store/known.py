"""The credentials of the stores this process started, for a :class:`~simctl.Client`
made here without them.

A SmartSim driver connects to the store it just started with
``Client(address=db.get_address()[0], cluster=False)``, passing no password:
SmartSim's stores have none. simctl's have (its admin user's, generated per
store), and the driver that started the store knows it. The experiment
records each store's addresses and admin credentials here once the store is
ready (:func:`remember`); a Client given no password, in a process whose
environment names none (``SSDB_PASSWORD``: a member process has its own
there), takes them from here for an address it connects to (:func:`lookup`).
Nothing is written anywhere: this is the driver's own memory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

#: "host:port" (as ``get_address`` gives it) -> (username, password, tls_ca)
_KNOWN: dict[str, tuple[str | None, str, str | None]] = {}
_LOCK = threading.Lock()


def remember(store: Any) -> None:
    """Record the addresses and admin credentials of ``store`` (an entity with
    ``get_address()``, ``username``, ``password`` and ``tls_ca``, such as a
    started :class:`~simctl.store.Orchestrator`); anything else is ignored."""
    password = getattr(store, "password", None)
    get_address = getattr(store, "get_address", None)
    if not isinstance(password, str) or not password or not callable(get_address):
        return
    creds = (getattr(store, "username", None), password, getattr(store, "tls_ca", None))
    addresses = get_address()
    with _LOCK:
        for address in addresses:
            _KNOWN[str(address)] = creds


def forget(addresses: Iterable[Any]) -> None:
    """Drop what was recorded for ``addresses`` (a store that was stopped)."""
    with _LOCK:
        for address in addresses:
            _KNOWN.pop(str(address), None)


def lookup(addresses: Iterable[Any], username: str | None, tls_ca: str | None
           ) -> tuple[str | None, str | None, str | None]:
    """``(username, password, tls_ca)`` for a Client connecting to ``addresses``:
    the recorded credentials of the first address this process started a store
    at (``username`` and ``tls_ca`` given to the Client win), else
    ``(username, None, tls_ca)``."""
    with _LOCK:
        found = next((_KNOWN[str(a)] for a in addresses if str(a) in _KNOWN), None)
    if found is None:
        return username, None, tls_ca
    return (username if username is not None else found[0]), found[1], (tls_ca if tls_ca is not None else found[2])
