"""Wrong-type arguments raise ConfigTypeError (a ConfigError that is also a
TypeError, what SmartSim raises for the same mistake); wrong values of the
right type stay a plain ConfigError (a ValueError, not a TypeError). Each
case through simctl's own public API, the message still naming the argument."""

from __future__ import annotations

import pytest

import simctl
from simctl.store import colocated

RS = simctl.RunSettings


@pytest.mark.parametrize("make, match", [
    (lambda: RS("python", env_vars={"A": {"abc"}}), r"env_vars\['A'\] must be a str, int, float or path"),
    (lambda: RS("python", env_vars={"A": {"a": "b"}}), r"env_vars\['A'\]"),
    (lambda: RS("python", env_vars={"A": True}), r"env_vars\['A'\]"),
    (lambda: RS("python", env_vars={1: "x"}), "variable name 1 .int. must be a non-empty string"),
    (lambda: RS("python", env_vars=["A=1"]), "env_vars must be a dict of variable name"),
    (lambda: RS("python").update_env({"A": [1]}), r"env_vars\['A'\]"),
    (lambda: RS("python", exe_args=[1, {"a"}]), r"exe_args\[1\] must be a str or int or float or path"),
    (lambda: RS("python", exe_args=123), "exe_args must be a string or a list"),
    (lambda: RS("python", run_args=["n"]), "run_args must be a dict of flag name"),
    (lambda: RS("python", run_args={1: 2}), "flag name 1 .int. must be a string"),
    (lambda: RS("python", run_args={"n": [2]}), r"run_args\['n'\] must be a str, int, float or path"),
    (lambda: colocated.tcp(custom_pinning=[1.0]), "custom_pinning must be CPU numbers"),
    (lambda: colocated.tcp(custom_pinning=["a"]), "custom_pinning must be CPU numbers"),
    (lambda: colocated.tcp(custom_pinning="10"), "custom_pinning must be CPU numbers"),
    (lambda: colocated.uds(custom_pinning=[True]), "custom_pinning must be CPU numbers"),
    (lambda: colocated.tcp(debug="yes"), "debug must be True or False"),
])
def test_a_wrong_type_is_a_type_error_and_a_config_error(make, match):
    with pytest.raises(simctl.ConfigTypeError, match=match) as err:
        make()
    assert isinstance(err.value, TypeError) and isinstance(err.value, simctl.ConfigError)


@pytest.mark.parametrize("params, match", [
    ({"h": {"h": [5]}}, "values given as a dict are ambiguous"),
    ({"h": {5, 6}}, "values given as a set have no order"),
])
def test_ensemble_parameter_values_of_the_wrong_type(tmp_path, params, match):
    exp = simctl.Experiment("e", exp_path=str(tmp_path), launcher="local")
    rs = exp.create_run_settings("python")
    with pytest.raises(TypeError, match=match) as err:
        exp.create_ensemble("ens", params=params, run_settings=rs)
    assert isinstance(err.value, simctl.ConfigTypeError)


@pytest.mark.parametrize("make, match", [
    (lambda: RS("python", env_vars={"": "x"}), "variable name '' .str. must be a non-empty string"),
    (lambda: RS("python", env_vars={"A": float("nan")}), "must be a finite number"),
    (lambda: RS("python", run_args={"": 2}), "must be a non-empty name"),
    (lambda: colocated.tcp(custom_pinning=[-1]), "custom_pinning must be CPU numbers"),
    (lambda: colocated.tcp(custom_pinning=[]), "custom_pinning is empty"),
])
def test_a_wrong_value_of_the_right_type_is_not_a_type_error(make, match):
    with pytest.raises(simctl.ConfigError, match=match) as err:
        make()
    assert not isinstance(err.value, TypeError)
