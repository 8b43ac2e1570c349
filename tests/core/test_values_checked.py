"""Values checked where they enter (issue 16): model and ensemble parameter
values simctl cannot write as text, and (issue 18) each ensemble member's own
copy of its run settings. Unit tests: nothing is started."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import simctl
from simctl.workflow.model import params_to_args


class Named:
    """An object with its own text."""

    def __str__(self) -> str:
        return "named"


@pytest.mark.parametrize(("value", "says"), [
    (None, "None has no text to write"),
    (b"ab", "bytes would be written as b'ab'"),
    (bytearray(b"ab"), "bytes would be written"),
    (1 + 2j, "complex number"),
    ([1, 2], "a list is not one value"),
    ({"a": 1}, "a dict is not one value"),
    ((1,), "a tuple is not one value"),
    ({1}, "a set is not one value"),
    (object(), "no text of its own"),
])
def test_a_model_parameter_simctl_cannot_write_is_refused(exp, rs, value, says):
    with pytest.raises(simctl.ConfigError, match=rf"parameter 'x': .* {re.escape(says)}"):
        exp.create_model("m", rs, params={"x": value}, params_as_args=["x"])


@pytest.mark.parametrize(("value", "says"), [
    ([1, None], "None has no text"),
    ([b"a", b"b"], "bytes would be written"),
    ([[1, 2], [3]], "a list is not one value"),
    (None, "None has no text"),  # a parameter given None as its only value
])
def test_an_ensemble_value_simctl_cannot_write_is_refused(exp, rs, value, says):
    with pytest.raises(simctl.ConfigError, match=re.escape(says)):
        exp.create_ensemble("e", params={"x": value}, run_settings=rs)


def test_values_that_have_a_text_are_taken_as_before(exp, rs):
    params = {"s": "a", "i": 3, "f": 0.5, "b": True, "n": np.int64(7), "g": np.float32(0.25),
              "p": Path("/d/f"), "q": Fraction(1, 3), "o": Named()}
    m = exp.create_model("m", rs, params=params, params_as_args=list(params))
    assert m.params_to_args() == ["-s", "a", "-i", "3", "-f", "0.5", "-b", "True", "-n", "7", "-g", "0.25",
                                  "-p", "/d/f", "-q", "1/3", "-o", "named"]
    ens = exp.create_ensemble("e", params={"x": np.arange(2), "y": "one"}, run_settings=rs)
    assert [params_to_args(m.params, ["x", "y"]) for m in ens] == [["-x", "0", "-y", "one"], ["-x", "1", "-y", "one"]]


def test_each_member_has_its_own_run_settings(exp, rs):
    ens = exp.create_ensemble("e", params={"x": [1, 2, 3]}, run_settings=rs)
    a, b, c = ens.models
    assert a.run_settings == rs and a.run_settings is not rs and a.run_settings is not b.run_settings
    a.run_settings.set_hostlist(["n1"])
    a.run_settings.update_env({"ONLY_A": "1"})
    a.run_settings.add_exe_args(["--only-a"])
    a.run_settings.set("exclusive")
    assert a.run_settings.hostlist == ["n1"] and a.run_settings.env_vars["ONLY_A"] == "1"
    for other in (b.run_settings, c.run_settings, rs):
        assert other.hostlist == [] and "ONLY_A" not in other.env_vars
        assert "--only-a" not in other.exe_args and "exclusive" not in other.run_args


def test_a_member_changed_after_creation_is_still_checked_at_start(exp, rs):
    ens = exp.create_ensemble("e", params={"x": [1, 2]}, run_settings=rs)
    ens.models[1].run_settings.run_command = "srun"  # the local launcher has no run command
    with pytest.raises(simctl.ConfigError, match="srun"):
        exp.preview(ens, show=False)


def test_params_set_after_the_model_was_made_are_checked_too(exp, rs, tmp_path):
    m = exp.create_model("m", rs, params={"x": 1}, params_as_args=["x"])
    with pytest.raises(simctl.ConfigError, match="parameter 'x': None"):
        m.params = {"x": None}
    m.params["x"] = b"ab"  # changed in place: found where it is written
    with pytest.raises(simctl.ConfigError, match="bytes would be written as b'ab'"):
        exp.preview(m, show=False)
    conf = tmp_path / "in.txt"
    conf.write_text("x = ;x;\n")
    m.attach_generator_files(to_configure=[str(conf)])
    with pytest.raises(simctl.ConfigError, match="bytes would be written as b'ab'"):
        exp.generate(m)
    assert not (Path(exp.exp_path) / "m").exists()


def test_a_member_is_found_by_name_or_index_only(exp, rs):
    ens = exp.create_ensemble("e", params={"x": [1, 2]}, run_settings=rs)
    assert ens[1].name == "e_1" and ens["e_0"].name == "e_0"
    with pytest.raises(simctl.ConfigError, match=r"by its name \(a str\) or its index \(an int\), got 1.5"):
        ens[1.5]


def test_preview_of_nothing_is_an_error_as_start_of_nothing_is(exp):
    with pytest.raises(simctl.ConfigError, match=r"preview\(\) needs at least one entity"):
        exp.preview()
