"""The environment contract has one owner, simctl.store.contract: no other
module spells its variables (a string in code: a key, a message, an f-string
part; docstrings may talk about them), and its reader and writers say what
the contract's table says."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import simctl
from simctl.store import contract

PACKAGE = Path(simctl.__file__).resolve().parent
#: the contract's names, as whole words
SPELLED = re.compile(r"\b(" + "|".join(map(re.escape, contract.NAMES)) + r")\b")
#: modules that may spell a name: the contract; the core's per-node wrapper owns the readiness
#: file's name (the core may not import the store, so the contract takes it from there)
OWNERS = {"store/contract.py": set(contract.NAMES), "core/pernode.py": {contract.READY_FILE},
          # SmartRedis's own option name (ConfigOptions' "SSDB"), which happens to be the variable's
          "compat/smartredis/__init__.py": {contract.ADDRESS}}


def literals(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every str constant in ``source`` that is not a docstring."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def spellings(source: str, allowed: set[str] = frozenset()) -> list[tuple[int, str]]:
    return [(line, name) for line, text in literals(source) for name in SPELLED.findall(text) if name not in allowed]


def test_the_scanner_finds_a_name_in_code_and_not_in_docstrings():
    source = ('"""Reads SSDB."""\nimport os\n\ndef f():\n    """SSKEYIN too."""\n'
              '    return os.environ["SSDB"], f"no SSDB_PASSWORD for {x}", "SSDB_CLUSTERS", "MY_SSDB"\n')
    assert spellings(source) == [(6, "SSDB"), (6, "SSDB_PASSWORD")]


def test_no_module_but_the_contract_spells_its_variables():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for line, name in spellings(path.read_text(encoding="utf-8"), OWNERS.get(rel, set())):
            found.append(f"simctl/{rel}:{line} spells {name!r}")
    assert not found, "use the names in simctl.store.contract instead:\n" + "\n".join(found)


def test_the_contract_documents_every_variable_it_names():
    doc = contract.__doc__ or ""
    for name in contract.NAMES:
        assert f"``{name}``" in doc, name
    assert len(set(contract.NAMES)) == 10


def test_read():
    env = contract.read({"SSDB": "h:1,h:2", "SSDB_CLUSTER": "1", "SSDB_PASSWORD": "pw", "SSKEYOUT": " me ",
                         "SSKEYIN": "a, b,,c", "SIMCTL_READY_FILE": "/tmp/ready", "OTHER": "x",
                         "SSDB_USER": "simctl-member", "SSDB_TLS_CA": "/d/tls-ca.crt"})
    assert env == contract.StoreEnv(address="h:1,h:2", cluster=True, user="simctl-member", password="pw",
                                    tls_ca="/d/tls-ca.crt", keyout="me", keyin=("a", "b", "c"),
                                    ready_file="/tmp/ready")
    assert contract.read({}) == contract.StoreEnv()
    assert contract.read({"SSDB_PASSWORD": "", "SSDB_CLUSTER": "0", "SSDB_USER": "", "SSDB_TLS_CA": ""}) == \
        contract.StoreEnv(cluster=False)
    assert contract.read({"SSDB_CLUSTER": "yes"}).cluster is None


def test_read_takes_this_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("SSDB", "unix:///s")
    monkeypatch.setenv("SSKEYIN", "p")
    assert (contract.read().address, contract.read().keyin) == ("unix:///s", ("p",))


@pytest.mark.parametrize("cluster, flag", [(True, "1"), (False, "0")])
def test_the_writers(cluster, flag):
    env, secret = contract.store_env(["h:1", "[::1]:2"], cluster, "pw")
    kind = "Clustered" if cluster else "Standalone"
    assert env == {"SSDB": "h:1,[::1]:2", "SSDB_CLUSTER": flag, "SR_DB_TYPE": kind}
    assert secret == {"SSDB_PASSWORD": "pw"}
    assert contract.read(env | secret) == contract.StoreEnv(address="h:1,[::1]:2", cluster=cluster, password="pw")
    assert contract.prefix_env("me", ["a", "b"]) == {"SSKEYOUT": "me", "SSKEYIN": "a,b"}
    assert contract.prefix_env(None, []) == {}
    assert contract.without_password({"SSDB_PASSWORD": "pw", "SSDB": "h:1"}) == {"SSDB": "h:1"}
    assert contract.without_password({"SIMCTL_STORE_SECRETS": "admin=x", "SSDB_USER": "u"}) == {"SSDB_USER": "u"}


def test_the_writers_with_a_user_and_a_certificate_authority():
    env, secret = contract.store_env(["h:1"], False, "pw", user="simctl-member", tls_ca="/d/tls-ca.crt")
    assert env == {"SSDB": "h:1", "SSDB_CLUSTER": "0", "SR_DB_TYPE": "Standalone", "SSDB_USER": "simctl-member",
                   "SSDB_TLS_CA": "/d/tls-ca.crt"}
    assert secret == {"SSDB_PASSWORD": "pw"}  # the user's name is no secret; its password is
    assert contract.read(env | secret) == contract.StoreEnv(address="h:1", cluster=False, user="simctl-member",
                                                            password="pw", tls_ca="/d/tls-ca.crt")


def test_a_named_store_is_also_handed_over_under_its_name():
    env, secret = contract.store_env(["h:1", "h:2"], True, "pw", user="simctl-member", name="reg")
    assert env == {"SSDB": "h:1,h:2", "SSDB_CLUSTER": "1", "SR_DB_TYPE": "Clustered", "SSDB_USER": "simctl-member",
                   "SSDB_reg": "h:1,h:2", "SSDB_CLUSTER_reg": "1", "SR_DB_TYPE_reg": "Clustered",
                   "SSDB_USER_reg": "simctl-member"}
    assert secret == {"SSDB_PASSWORD": "pw", "SSDB_PASSWORD_reg": "pw"}  # both secret, both redacted
    # a second store handed over after it: the plain names are its, each keeps its own suffixed ones
    env2, secret2 = contract.store_env(["h:9"], False, "pw2", user="simctl-member", name="colo")
    both = env | secret | env2 | secret2
    assert contract.read(both) == contract.StoreEnv(address="h:9", cluster=False, user="simctl-member", password="pw2")
    assert contract.read(both, name="reg") == contract.StoreEnv(address="h:1,h:2", cluster=True, user="simctl-member",
                                                                password="pw")
    assert contract.read(both, name="nope") == contract.StoreEnv()
    assert contract.store_names(both) == ["colo", "reg"]
    assert contract.store_named(["h:2", "h:1"], both) == "reg"
    assert contract.store_named(["h:9"], both) == "colo" and contract.store_named(["h:3"], both) is None
    assert contract.without_password(both) == env | env2


@pytest.mark.parametrize("name", ["CLUSTER", "USER", "PASSWORD", "TLS_CA", "a=b"])
def test_a_name_that_would_clash_gets_no_suffixed_variables(name):
    env, secret = contract.store_env(["h:1"], False, "pw", name=name)
    assert env == {"SSDB": "h:1", "SSDB_CLUSTER": "0", "SR_DB_TYPE": "Standalone"} and secret == {"SSDB_PASSWORD": "pw"}
    assert contract.named("SSDB", name) is None and contract.named("SSDB", "") == "SSDB"
