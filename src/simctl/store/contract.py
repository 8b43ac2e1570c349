"""The environment contract between simctl and the processes it starts: the
variables an application (in any language) reads to find the feature store.
This module is their one owner: every other module names them through the
constants here and reads them with :func:`read` (a test checks that no other
module spells them).

========================  ====================================================
``SSDB``                  the store's address(es), comma-separated: ``host:port``
                          of every shard (an IPv6 host in brackets,
                          ``[::1]:6379``), or ``unix:///path`` of a Unix socket
                          (a colocated store)
``SSDB_CLUSTER``          ``1`` when the addresses form a Redis Cluster, else
                          ``0`` (a client may also ask the server: INFO cluster)
``SSDB_USER``             the store's user this process logs in as (``AUTH
                          user password``; a member is ``simctl-member``, see
                          :mod:`simctl.store.roles`); unset: the ``default``
                          user, which an experiment's store disables
``SSDB_PASSWORD``         that user's password; set only in the environment, or
                          in a mode 0600 file a batch job sources, never on a
                          command line
``SSDB_TLS_CA``           set when the store speaks only TLS: the path of the
                          certificate (PEM) of the store's own certificate
                          authority, the only one to trust; the servers'
                          certificates name their hosts and addresses
``SSKEYOUT``              the prefix this entity's keys are written under (its
                          name): key ``<SSKEYOUT>.<name>``
``SSKEYIN``               comma-separated names whose prefixed keys it reads;
                          the first is the data source until the client picks
                          another
``SIMCTL_READY_FILE``     for a colocated store's supervisor: the file it creates
                          once its server answers (and its ML objects are
                          stored), which the ranks on that node wait for
``SIMCTL_STORE_SECRETS``  for a shard's supervisor only: the passwords of the
                          store's other users (``role=password,...``; secret,
                          like ``SSDB_PASSWORD``); it removes the variable
                          before starting anything
========================  ====================================================

A client in another language needs only the first seven; the key layout they
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
USER = "SSDB_USER"
PASSWORD = "SSDB_PASSWORD"
TLS_CA = "SSDB_TLS_CA"
KEYOUT = "SSKEYOUT"
KEYIN = "SSKEYIN"
#: the readiness file of a colocated store (named by the core's per-node wrapper)
READY_FILE = pernode.READY
#: the passwords of a store's users, for its supervisors (see :class:`simctl.store.roles.Secrets`)
STORE_SECRETS = "SIMCTL_STORE_SECRETS"

#: every variable of the contract
NAMES = (ADDRESS, CLUSTER, USER, PASSWORD, TLS_CA, KEYOUT, KEYIN, READY_FILE, STORE_SECRETS)
#: the variables that hold secrets
SECRETS = (PASSWORD, STORE_SECRETS)


@attrs.frozen
class StoreEnv:
    """What an environment says about the store (see the module docstring)."""

    #: ``SSDB`` as set (None: unset); :func:`simctl.store.address.parse_addresses` reads it
    address: str | None = None
    #: ``SSDB_CLUSTER``: True for ``1``, False for ``0``, None when unset or anything else
    cluster: bool | None = None
    #: ``SSDB_USER``; None when unset or empty
    user: str | None = None
    #: ``SSDB_PASSWORD``; None when unset or empty
    password: str | None = None
    #: ``SSDB_TLS_CA``; None when unset or empty
    tls_ca: str | None = None
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
                    user=env.get(USER) or None, password=env.get(PASSWORD) or None,
                    tls_ca=env.get(TLS_CA) or None, keyout=env.get(KEYOUT, "").strip(),
                    keyin=tuple(s.strip() for s in env.get(KEYIN, "").split(",") if s.strip()),
                    ready_file=env.get(READY_FILE) or None)


def store_env(addresses: Iterable[object], cluster: bool, password: str, user: str | None = None,
              tls_ca: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(environment, secret environment) that hand a store to the processes
    started after it: ``SSDB``, ``SSDB_CLUSTER``, ``SSDB_USER`` (when
    ``user`` is given) and ``SSDB_TLS_CA`` (when ``tls_ca`` is), and
    ``SSDB_PASSWORD`` (secret: redacted wherever a step's environment is shown)."""
    env = {ADDRESS: ",".join(map(str, addresses)), CLUSTER: "1" if cluster else "0"}
    if user:
        env[USER] = user
    if tls_ca:
        env[TLS_CA] = tls_ca
    return env, {PASSWORD: password}


def prefix_env(keyout: str | None, keyin: Iterable[str]) -> dict[str, str]:
    """The key-prefixing variables of an entity named ``keyout`` (None: it
    does not prefix) that reads the entities ``keyin``."""
    env = {KEYOUT: keyout} if keyout else {}
    names = list(keyin)
    if names:
        env[KEYIN] = ",".join(names)
    return env


def without_password(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without ``SSDB_PASSWORD`` and ``SIMCTL_STORE_SECRETS``
    (for a child that must not see them)."""
    return {k: v for k, v in environ.items() if k not in SECRETS}
