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
``SR_DB_TYPE``            SmartRedis's name for ``SSDB_CLUSTER``: ``Clustered``
                          or ``Standalone``
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

An entity given several stores (a store and a colocated one, or two stores)
finds each under its name too: the first six variables suffixed with
``_<name>`` (``SSDB_<name>``, ``SSDB_PASSWORD_<name>``...; SmartRedis's
``ConfigOptions.create_from_environment(name)`` reads ``SSDB_<name>`` and
``SR_DB_TYPE_<name>``); the plain ones name the last store handed over (a
colocated store over the others). A name that holds ``=`` or is one of
:data:`RESERVED` gets no suffixed variables (they would clash with the plain
ones).

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
#: SmartRedis's variable for the kind of store (``Clustered`` / ``Standalone``)
DB_TYPE = "SR_DB_TYPE"
KEYOUT = "SSKEYOUT"
KEYIN = "SSKEYIN"
#: the readiness file of a colocated store (named by the core's per-node wrapper)
READY_FILE = pernode.READY
#: the passwords of a store's users, for its supervisors (see :class:`simctl.store.roles.Secrets`)
STORE_SECRETS = "SIMCTL_STORE_SECRETS"

#: every variable of the contract
NAMES = (ADDRESS, CLUSTER, USER, PASSWORD, TLS_CA, DB_TYPE, KEYOUT, KEYIN, READY_FILE, STORE_SECRETS)
#: store names that get no suffixed variables: ``SSDB_<name>`` would be one of the plain variables
RESERVED = ("CLUSTER", "USER", "PASSWORD", "TLS_CA")
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


def named(variable: str, name: str | None) -> str | None:
    """``variable`` of the store called ``name`` (``SSDB_PASSWORD_<name>``);
    the plain variable for None or ""; None for a name that gets no suffixed
    variables (it holds ``=`` or is one of :data:`RESERVED`)."""
    if not name:
        return variable
    return None if "=" in name or "\0" in name or name in RESERVED else f"{variable}_{name}"


def read(environ: Mapping[str, str] | None = None, name: str | None = None) -> StoreEnv:
    """The contract's variables in ``environ`` (default: this process's
    environment); with ``name``, the store variables of the store called so
    (``SSDB_<name>``...; the prefixes and the ready file are never suffixed)."""
    env = os.environ if environ is None else environ

    def get(variable: str) -> str | None:
        key = named(variable, name)
        return env.get(key) if key else None

    return StoreEnv(address=get(ADDRESS), cluster={"1": True, "0": False}.get((get(CLUSTER) or "").strip()),
                    user=get(USER) or None, password=get(PASSWORD) or None,
                    tls_ca=get(TLS_CA) or None, keyout=env.get(KEYOUT, "").strip(),
                    keyin=tuple(s.strip() for s in env.get(KEYIN, "").split(",") if s.strip()),
                    ready_file=env.get(READY_FILE) or None)


def store_env(addresses: Iterable[object], cluster: bool, password: str, user: str | None = None,
              tls_ca: str | None = None, name: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(environment, secret environment) that hand a store to the processes
    started after it: ``SSDB``, ``SSDB_CLUSTER``, ``SR_DB_TYPE``, ``SSDB_USER``
    (when ``user`` is given) and ``SSDB_TLS_CA`` (when ``tls_ca`` is), and
    ``SSDB_PASSWORD`` (secret: redacted wherever a step's environment is
    shown); with the store's ``name``, each also suffixed ``_<name>`` (see
    :func:`named`), so that an entity given several stores has each one's."""
    env = {ADDRESS: ",".join(map(str, addresses)), CLUSTER: "1" if cluster else "0",
           DB_TYPE: "Clustered" if cluster else "Standalone"}
    if user:
        env[USER] = user
    if tls_ca:
        env[TLS_CA] = tls_ca
    secret = {PASSWORD: password}
    for plain in (env, secret):
        plain.update({key: value for key, value in ((named(k, name), v) for k, v in plain.items()) if key})
    return env, secret


def store_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names of the stores handed over under their names: those with
    both ``SSDB_<name>`` and ``SSDB_PASSWORD_<name>``."""
    env = os.environ if environ is None else environ
    names = (key[len(ADDRESS) + 1:] for key in env if key.startswith(ADDRESS + "_"))
    return sorted(n for n in names if n and (named(PASSWORD, n) or "") in env)


def store_named(addresses: Iterable[object], environ: Mapping[str, str] | None = None) -> str | None:
    """The name of the store (of :func:`store_names`) whose ``SSDB_<name>``
    lists exactly ``addresses``, in any order, or None: how a client given an
    address finds that store's credentials."""
    env = os.environ if environ is None else environ
    wanted = sorted(map(str, addresses))
    for name in store_names(env):
        if sorted(a.strip() for a in env[f"{ADDRESS}_{name}"].split(",") if a.strip()) == wanted:
            return name
    return None


def prefix_env(keyout: str | None, keyin: Iterable[str]) -> dict[str, str]:
    """The key-prefixing variables of an entity named ``keyout`` (None: it
    does not prefix) that reads the entities ``keyin``."""
    env = {KEYOUT: keyout} if keyout else {}
    names = list(keyin)
    if names:
        env[KEYIN] = ",".join(names)
    return env


def without_password(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without ``SSDB_PASSWORD`` (also a named store's,
    ``SSDB_PASSWORD_<name>``) and ``SIMCTL_STORE_SECRETS`` (for a child that
    must not see them)."""
    return {k: v for k, v in environ.items() if k not in SECRETS and not k.startswith(PASSWORD + "_")}
