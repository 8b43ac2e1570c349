"""Fixtures of the feature store's tests.

The client's wire-level tests (test_store_client, test_store_models) run
against the session's bare password-protected redis-servers, one server and a
3-shard Redis Cluster (``stores.redis``), each test on an emptied store
(``client``); the tests of what an experiment's store does use
``stores.orchestrator``. Every test here starts real servers: all are marked
``slow``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _markers import mark_slow_under
from _plugin_helpers import MissingRuntimePlugin
from _store_helpers import REDIS_SERVER, Server, cluster_address, make_client

from simctl.core.plugins import default_plugins, reset_default_plugins
from simctl.store import Client

HERE = Path(__file__).resolve().parent

# a missing server FAILS these tests (scripts/setup.sh installs it), never skips them
assert os.path.exists(REDIS_SERVER), \
    f"{REDIS_SERVER} is missing: run bash scripts/setup.sh (apt-get install redis-server)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_slow_under(HERE, items)


# -- the shared bare redis-servers --------------------------------------------------------


@pytest.fixture(scope="module")
def server(stores) -> Server:
    """The shared bare single server (the session's factory starts it once for the modules that use it)."""
    return stores.redis(1)


@pytest.fixture(scope="module")
def cluster(stores) -> list[Server]:
    """The shared bare 3-shard Redis Cluster."""
    return stores.redis(3)


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def address(kind: str, request: pytest.FixtureRequest) -> str:
    """The store of this parametrization: one server, or the cluster (all its nodes)."""
    if kind == "standalone":
        return request.getfixturevalue("server").address
    return cluster_address(request.getfixturevalue("cluster"))


@pytest.fixture(scope="module")
def shared(address: str) -> Iterator[Client]:
    """One client per store for the whole module (hypothesis tests reuse it)."""
    c = make_client(address)
    yield c
    c.close()


@pytest.fixture
def client(shared: Client) -> Client:
    """The store's client, on an empty store."""
    shared.flush_db()
    return shared


# -- a backend whose runtime is missing ------------------------------------------------------


@pytest.fixture
def missing_runtime() -> Iterator[None]:
    """A real backend plugin, registered in-process, whose runtime is not installed."""
    reset_default_plugins()
    default_plugins().register(MissingRuntimePlugin(), name="missing-runtime")
    yield
    reset_default_plugins()
