"""Colocated-store arguments checked at the call (or, for what depends on the
host the model runs on, at start() before anything is launched), as
``create_database``'s are; a colocated store that fails anyway quotes its
error line in the model's reason; two stores with one name point at
``db_identifier`` (issue 16). Real servers, real models."""

from __future__ import annotations

import socket

import pytest
from _lifecycle_helpers import load_manifest, make_exp

import simctl
from simctl import Status
from simctl.store import colocated

pytestmark = pytest.mark.slow


def _model(exp: simctl.Experiment, tmp_path, name: str = "m") -> simctl.Model:
    return exp.create_model(name, exp.create_run_settings("true"), path=str(tmp_path))


def test_a_misspelt_directive_is_refused_at_the_call_with_the_right_spelling(tmp_path):
    m = _model(make_exp(tmp_path), tmp_path)
    with pytest.raises(simctl.ConfigError, match=r"'maxclient' is not a directive .* did you mean 'maxclients'"):
        m.colocate_db_tcp(maxclient=100)
    with pytest.raises(simctl.ConfigError, match=r"'maxmemmory' is not a directive .* did you mean 'maxmemory'"):
        m.colocate_db_uds(maxmemmory="1gb")
    m.colocate_db_tcp(maxclients=100, hash_max_ziplist_entries=64)  # a real one, and an alias the server knows
    assert ("maxclients", "100") in m.colocated_db.conf


def test_an_interface_missing_here_is_refused_at_start_before_anything_runs(tmp_path):
    exp = make_exp(tmp_path)
    m = _model(exp, tmp_path)
    m.colocate_db_tcp(ifname="nope0")
    with pytest.raises(simctl.ConfigError, match=r"model 'm': colocate_db_tcp\(ifname=\['nope0'\]\): .*'nope0' "
                                                 r"not found on .* interfaces here: .*'lo'"):
        exp.start(m)
    assert exp.get_status(m) == [Status.NEW]


def test_a_port_in_use_is_refused_at_start_naming_its_holder(tmp_path):
    exp = make_exp(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        m = _model(exp, tmp_path)
        m.colocate_db_tcp(port=port)
        with pytest.raises(simctl.ConfigError, match=rf"port {port} on 127.0.0.1 is already in use.*"
                                                     "the store colocated with model 'm'"):
            exp.start(m)
    assert exp.get_status(m) == [Status.NEW]


def test_two_members_colocated_on_one_port_are_refused_at_start(tmp_path):
    exp = make_exp(tmp_path)
    ens = exp.create_ensemble("e", replicas=2, run_settings=exp.create_run_settings("true"))
    exp.generate(ens)
    port = colocated.free_ports()
    for member in ens:
        member.colocate_db_tcp(port=port)
    with pytest.raises(simctl.ConfigError, match=rf"model 'e/e_0' and model 'e/e_1' both colocate a store on port "
                                                 rf"{port} on this host"):
        exp.start(ens)
    uds = exp.create_ensemble("u", replicas=2, run_settings=exp.create_run_settings("true"))
    for member in uds:
        member.colocate_db_uds(unix_socket=str(tmp_path / "one.sock"))
    with pytest.raises(simctl.ConfigError, match="both colocate a store on the Unix socket"):
        exp.start(uds)


def test_a_colocated_store_that_fails_quotes_its_error_line_in_the_models_reason(tmp_path):
    exp = make_exp(tmp_path)
    m = _model(exp, tmp_path)
    m.colocate_db_tcp(maxclients=100)
    # a value the server refuses (no check short of running it knows every value's range)
    m.store_use.colocated = colocated.ColocatedDB(**{**_fields(m.colocated_db), "conf": (("maxclients", "-5"),)})
    exp.start(m)
    rec = load_manifest(exp).latest()["m"]
    assert rec.status is Status.FAILED
    assert "its colocated store failed: " in rec.reason, rec.reason
    assert "maxclients" in rec.reason.split("its colocated store failed: ")[1], rec.reason
    # the per-node wrapper runs without a second copy of its module (no RuntimeWarning in every job's errors)
    assert "RuntimeWarning" not in (tmp_path / "m.err").read_text()


def test_two_stores_with_the_default_name_point_at_db_identifier(tmp_path):
    exp = make_exp(tmp_path)
    a, b = exp.create_database(), exp.create_database()
    with pytest.raises(simctl.ConfigError, match="given twice.*give the second Orchestrator its own db_identifier="):
        exp.preview(a, b, show=False)
    exp.start(a)
    try:
        with pytest.raises(simctl.ConfigError, match="already running.*its own db_identifier="):
            exp.start(b)
    finally:
        exp.stop(a)


def _fields(db: colocated.ColocatedDB) -> dict:
    import attrs

    return attrs.asdict(db, recurse=False)
