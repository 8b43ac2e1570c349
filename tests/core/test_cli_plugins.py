"""`simctl plugins list` and `simctl --version`, run as the installed console
script in a subprocess, with and without the real external plugin packages."""

from __future__ import annotations

import json

import pytest

import simctl
from simctl.core.plugins import DISABLE_ENV

pytestmark = pytest.mark.slow  # every test runs the console script

BUILTINS = {"all_perm", "step", "random", "local"}
KEYS = {"name", "families", "provides", "version", "distribution", "builtin", "status", "error"}


def _json(proc) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert isinstance(data, list)
    return {rec["name"]: rec for rec in data}


def test_version(simctl_cli):
    proc = simctl_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"simctl, version {simctl.__version__}"


def test_list_shows_the_builtins_as_a_table(simctl_cli):
    proc = simctl_cli("plugins", "list")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for header in ("Name", "Family", "Provides", "Version", "Distribution", "Origin", "Status"):
        assert header in out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│") and line.split()[1] in BUILTINS}
    assert set(lines) == BUILTINS
    for name in ("all_perm", "step", "random"):
        row = lines[name]
        assert "strategy" in row and "built-in" in row and " ok " in row and simctl.__version__ in row


def test_list_json_matches_the_in_process_records(simctl_cli, plugs):
    data = _json(simctl_cli("plugins", "list", "--json"))
    assert BUILTINS <= set(data)
    assert set(data) == {r.name for r in plugs.records}
    for name in ("all_perm", "step", "random"):
        rec = data[name]
        assert KEYS <= set(rec)
        assert rec["families"] == ["strategy"]
        assert rec["provides"] == {"strategy": [name]}
        assert (rec["distribution"], rec["version"], rec["builtin"], rec["status"]) == (
            "simctl-hpc", simctl.__version__, True, "ok")
    assert data["local"]["provides"] == {"launcher": ["local"]}


def test_family_filter(simctl_cli):
    data = _json(simctl_cli("plugins", "list", "--json", "--family", "strategy"))
    assert {"all_perm", "step", "random"} <= set(data)
    assert "local" not in data
    assert all("strategy" in rec["families"] for rec in data.values())
    bad = simctl_cli("plugins", "list", "--family", "nonsense")
    assert bad.returncode == 2 and "nonsense" in bad.stderr


def test_strict_passes_when_nothing_is_broken(simctl_cli):
    assert simctl_cli("plugins", "list", "--strict").returncode == 0


def test_external_plugins_appear_beside_the_builtins(external_plugins, simctl_cli):
    proc = simctl_cli("plugins", "list")
    assert proc.returncode == 0, proc.stderr  # a broken plugin is reported, not fatal
    rows = [line for line in proc.stdout.splitlines() if line.startswith("│")]
    lhs = next(r for r in rows if r.split()[1] == "lhs")
    assert "simctl-lhs" in lhs and "external" in lhs and " ok " in lhs and "0.1.0" in lhs
    broken = next(r for r in rows if r.split()[1] == "broken")
    assert "simctl-broken-plugin" in broken and "6.6.6" in broken and "broken:" in broken

    data = _json(simctl_cli("plugins", "list", "--json"))
    assert BUILTINS | {"lhs", "broken", "typo_hook", "wrong_args"} <= set(data)
    assert data["lhs"] | {"error": None} == data["lhs"]
    assert (data["lhs"]["provides"], data["lhs"]["builtin"]) == ({"strategy": ["lhs"]}, False)
    b = data["broken"]
    assert (b["status"], b["distribution"], b["version"], b["builtin"]) == (
        "broken", "simctl-broken-plugin", "6.6.6", False)
    assert "exploded on import" in b["error"]
    assert data["typo_hook"]["status"] == "broken" and "simctl_register_strategys" in data["typo_hook"]["error"]
    assert data["wrong_args"]["status"] == "broken"
    for name in BUILTINS:
        assert data[name]["status"] == "ok"


def test_strict_exits_1_when_a_plugin_is_broken(external_plugins, simctl_cli):
    proc = simctl_cli("plugins", "list", "--strict")
    assert proc.returncode == 1
    assert "broken" in proc.stdout  # the table is still printed


def test_disabling_the_broken_plugins_by_name(external_plugins, simctl_cli):
    env = {DISABLE_ENV: "broken,typo_hook,wrong_args"}
    assert simctl_cli("plugins", "list", "--strict", env=env).returncode == 0
    data = _json(simctl_cli("plugins", "list", "--json", env=env))
    for name in ("broken", "typo_hook", "wrong_args"):
        assert data[name]["status"] == "disabled"
        assert DISABLE_ENV in data[name]["error"]
    assert data["lhs"]["status"] == "ok"


def test_family_filter_includes_external_strategies(external_plugins, simctl_cli):
    data = _json(simctl_cli("plugins", "list", "--json", "--family", "strategy"))
    assert {"all_perm", "step", "random", "lhs"} <= set(data)
    assert "local" not in data
    # a plugin that failed to load provides nothing: it is shown under every family
    assert {"broken", "typo_hook", "wrong_args"} <= set(data)
    launchers = _json(simctl_cli("plugins", "list", "--json", "--family", "launcher"))
    assert "broken" in launchers and "lhs" not in launchers


def test_a_name_clash_is_listed_not_fatal(clashing_plugin, simctl_cli):
    proc = simctl_cli("plugins", "list")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = _json(simctl_cli("plugins", "list", "--json"))
    mine = data["my_random"]
    assert (mine["status"], mine["distribution"], mine["version"]) == ("broken", "simctl-clash-plugin", "2.0.0")
    assert mine["provides"] == {"strategy": ["random", "reverse"]}
    assert "'random' is also provided by plugin 'random' (distribution simctl" in mine["error"]
    assert data["random"]["status"] == "broken" and "simctl-clash-plugin" in data["random"]["error"]
    assert data["all_perm"]["status"] == "ok"
    assert simctl_cli("plugins", "list", "--strict").returncode == 1
    ok = simctl_cli("plugins", "list", "--strict", env={DISABLE_ENV: "my_random"})
    assert ok.returncode == 0
