"""The environment contract between simctl and the processes it starts: the
variables an application (in any language) reads to find the feature store.
This module is their one owner: every other module names them through the
constants here and reads them with :func:`read` (a test checks that no other
module spells them).

=====================  ======================================================
``SSDB``               the store's address(es), comma-separated: ``host:port``
                       of every shard (an IPv6 host in brackets,
                       ``[::1]:6379``), or ``unix:///path`` of a Unix socket
                       (a colocated store)
``SSDB_CLUSTER``       ``1`` when the addresses form a Redis Cluster, else
                       ``0`` (a client may also ask the server: INFO cluster)
``SSDB_PASSWORD``      the store's password (AUTH); set only in the
                       environment, or in a mode 0600 file a batch job
                       sources, never on a command line
``SSKEYOUT``           the prefix this entity's keys are written under (its
                       name): key ``<SSKEYOUT>.<name>``
``SSKEYIN``            comma-separated names whose prefixed keys it reads;
                       the first is the data source until the client picks
                       another
``SIMCTL_READY_FILE``  for a colocated store's supervisor: the file it creates
                       once its server answers (and its ML objects are
                       stored), which the ranks on that node wait for
=====================  ======================================================

A client in another language needs only the first five; the key layout they
lead to is :mod:`simctl.store.format`. ``SIMCTL_READY_FILE`` is set by the
core's once-per-node wrapper (:mod:`simctl.core.pernode`, which owns the name:
the core may not import the store) and read by
:mod:`simctl.store.supervisor`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import attrs

from ..core import pernode

ADDRESS = "SSDB"
CLUSTER = "SSDB_CLUSTER"
PASSWORD = "SSDB_PASSWORD"
KEYOUT = "SSKEYOUT"
KEYIN = "SSKEYIN"
#: the readiness file of a colocated store (named by the core's per-node wrapper)
READY_FILE = pernode.READY

#: every variable of the contract
NAMES = (ADDRESS, CLUSTER, PASSWORD, KEYOUT, KEYIN, READY_FILE)


@attrs.frozen
class StoreEnv:
    """What an environment says about the store (see the module docstring)."""

    #: ``SSDB`` as set (None: unset); :func:`simctl.store.address.parse_addresses` reads it
    address: str | None = None
    #: ``SSDB_CLUSTER``: True for ``1``, False for ``0``, None when unset or anything else
    cluster: bool | None = None
    #: ``SSDB_PASSWORD``; None when unset or empty
    password: str | None = None
    #: ``SSKEYOUT``, stripped ("" when unset)
    keyout: str = ""
    #: the names in ``SSKEYIN``, in order
    keyin: tuple[str, ...] = ()
    #: ``SIMCTL_READY_FILE`` (None: unset)
    ready_file: str | None = None


def read(environ: Mapping[str, str] | None = None) -> StoreEnv:
    """The contract's variables in ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    return StoreEnv(address=env.get(ADDRESS), cluster={"1": True, "0": False}.get(env.get(CLUSTER, "").strip()),
                    password=env.get(PASSWORD) or None, keyout=env.get(KEYOUT, "").strip(),
                    keyin=tuple(s.strip() for s in env.get(KEYIN, "").split(",") if s.strip()),
                    ready_file=env.get(READY_FILE) or None)


def store_env(addresses: Iterable[object], cluster: bool, password: str) -> tuple[dict[str, str], dict[str, str]]:
    """(environment, secret environment) that hand a store to the processes
    started after it: ``SSDB`` and ``SSDB_CLUSTER``, and ``SSDB_PASSWORD``
    (secret: redacted wherever a step's environment is shown)."""
    return ({ADDRESS: ",".join(map(str, addresses)), CLUSTER: "1" if cluster else "0"}, {PASSWORD: password})


def prefix_env(keyout: str | None, keyin: Iterable[str]) -> dict[str, str]:
    """The key-prefixing variables of an entity named ``keyout`` (None: it
    does not prefix) that reads the entities ``keyin``."""
    env = {KEYOUT: keyout} if keyout else {}
    names = list(keyin)
    if names:
        env[KEYIN] = ",".join(names)
    return env


def without_password(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without ``SSDB_PASSWORD`` (for a child that must not see it)."""
    return {k: v for k, v in environ.items() if k != PASSWORD}
