"""The shared argument checks: what each accepts, what it refuses, and that
every refusal is a ConfigError naming the argument and showing the value."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

import pytest

import simctl
from simctl.core import checks


def refused(fn, *args, match: str, **kwargs) -> str:
    with pytest.raises(simctl.ConfigError, match=match) as err:
        fn(*args, **kwargs)
    return str(err.value)


# -- positive_int / number -----------------------------------------------------------------


@pytest.mark.parametrize("good", [1, 2, 10**30])
def test_positive_int_accepts(good):
    assert checks.positive_int("nodes", good) == good


@pytest.mark.parametrize("bad", [0, -1, 1.0, 1.5, "2", True, False, None, [1]])
def test_positive_int_refuses(bad):
    msg = refused(checks.positive_int, "nodes", bad, match=r"^nodes must be a positive integer, got ")
    assert type(bad).__name__ in msg


def test_positive_int_allow_none():
    assert checks.positive_int("nodes", None, allow_none=True) is None
    refused(checks.positive_int, "nodes", 0, allow_none=True, match="positive integer or None")


def test_number():
    assert checks.number("interval", 0.5, above=0) == 0.5
    assert checks.number("x", 0, minimum=0) == 0
    assert checks.number("x", None, allow_none=True) is None
    for bad in (0, -1, float("nan"), float("inf"), True, "1", None):
        refused(checks.number, "interval", bad, above=0, match=r"^interval must be a finite number > 0; got ")
    refused(checks.number, "x", -0.1, minimum=0, match=r"x must be a finite number >= 0; got -0.1 \(float\)")


def test_show_truncates_long_values():
    text = checks.show("x" * 500)
    assert len(text) < 100 and text.endswith("... (str)")


# -- string / string_list --------------------------------------------------------------------


def test_string():
    assert checks.string("queue", "debug") == "debug"
    assert checks.string("exe", Path("/bin/true"), path=True) == "/bin/true"
    assert checks.string("queue", None, allow_none=True) is None
    for bad in ("", "  ", None, 5, ["a"], b"q", "a\nb", "a\0b", Path("x")):
        refused(checks.string, "queue", bad, match=r"^queue must be a non-empty string")


@pytest.mark.parametrize("value, split, expected", [
    ("a b", None, ["a b"]),
    ("a 'b c'", shlex.split, ["a", "b c"]),
    ("n1,n2", lambda s: s.split(","), ["n1", "n2"]),
    (["a", 1, 2.5, Path("/p")], None, ["a", "1", "2.5", "/p"]),
    (("a", "b"), None, ["a", "b"]),
    (map(str, range(3)), None, ["0", "1", "2"]),
    ((str(i) for i in range(2)), None, ["0", "1"]),
    ({"a": 1}.keys(), None, ["a"]),
    ([], None, []),
])
def test_string_list_accepts(value, split, expected):
    assert checks.string_list("exe_args", value, split=split) == expected


@pytest.mark.parametrize("bad, why", [
    (b"-n", "decode bytes first"),
    (bytearray(b"-n"), "decode bytes first"),
    ({"--n": 4}, "a dict is ambiguous"),
    ({"a", "b"}, "a set has no order"),
    (None, "must be a string or a list"),
    (123, "must be a string or a list"),
    (["a", None], r"exe_args\[1\] must be a str or int or float or path; got None"),
    (["a", True], r"exe_args\[1\] .*got True \(bool\)"),
    ([[1, 2, 3]], r"exe_args\[0\] .*nested lists are not flattened"),
    (["a", b"x"], r"exe_args\[1\] .*got b'x'"),
    ([{"a": 1}], r"exe_args\[0\] .*got \{'a': 1\}"),
])
def test_string_list_refuses_naming_the_argument(bad, why):
    refused(checks.string_list, "exe_args", bad, match=why)
    refused(checks.string_list, "exe_args", bad, match="exe_args")


def test_string_list_item_types_and_none():
    assert checks.string_list("hostlist", None, allow_none=True) == []
    refused(checks.string_list, "hostlist", ["n1", 5], items=(str,), match=r"hostlist\[1\] must be a str; got 5")


def test_string_list_split_error_is_a_config_error():
    refused(checks.string_list, "exe_args", "'unclosed", split=shlex.split,
            match=r"exe_args: cannot split .*closing quotation")


def test_endless_iterators_are_refused_not_hung():
    refused(checks.string_list, "exe_args", itertools.repeat("x"), match=r"exe_args gave more than 1,000,000")
    refused(checks.bounded, "values", itertools.count(), match="endless iterator")
    assert checks.bounded("values", itertools.count(), limit=3) == [0, 1, 2]


# -- env_mapping -----------------------------------------------------------------------------------


def test_env_mapping_accepts_and_converts():
    got = checks.env_mapping("env_vars", {"A": "x", "B": 4, "C": 0.5, "D": Path("/p"), "E": None})
    assert got == {"A": "x", "B": "4", "C": "0.5", "D": "/p", "E": None}


@pytest.mark.parametrize("bad, why", [
    ({"A": ["x"]}, r"env_vars\['A'\] must be a str, int, float or path .*got \['x'\] \(list\)"),
    ({"A": {"x": 1}}, r"env_vars\['A'\] must be"),
    ({"A": True}, r"env_vars\['A'\] must be .*True \(bool\)"),
    ({"A": b"x"}, r"env_vars\['A'\] must be"),
    ({"A": "x\0y"}, r"env_vars\['A'\] .*without NUL"),
    ({1: "x"}, r"env_vars: variable name 1 \(int\) must be a non-empty string"),
    ({"": "x"}, "variable name '' .*must be a non-empty string"),
    ({"A=B": "x"}, r"variable name 'A=B' .*without '='"),
    ({"A\0": "x"}, "variable name .*NUL"),
    (["A=1"], "env_vars must be a dict"),
    ("A=1", "env_vars must be a dict"),
    (None, "env_vars must be a dict"),
])
def test_env_mapping_refuses(bad, why):
    refused(checks.env_mapping, "env_vars", bad, match=why)


# -- flags ------------------------------------------------------------------------------------------


def test_flag_mapping_strips_dashes_and_checks_values():
    got = checks.flag_mapping("run_args", {"--nodes": 1, "-np": 2, "n": "4", "exclusive": None,
                                           "out": Path("/o"), "f": 0.5})
    assert got == {"nodes": 1, "np": 2, "n": "4", "exclusive": None, "out": "/o", "f": 0.5}
    assert checks.flag_mapping("run_args", None) == {}
    assert checks.flag_mapping("run_args", {"-cc": "depth", "--ss": None, "-j": 1}, keep_single_dash=True) == \
        {"-cc": "depth", "ss": None, "j": 1}


@pytest.mark.parametrize("bad, why", [
    ("abc", r"run_args must be a dict of flag name -> value.*got 'abc' \(str\)"),
    (["nodes"], "run_args must be a dict"),
    ({1: 2}, r"run_args: flag name 1 \(int\) must be a string"),
    ({"": 1}, "flag name '' must be a non-empty name"),
    ({"--": 1}, "flag name '--' must be a non-empty name"),
    ({"a b": 1}, "flag name 'a b' .*without spaces"),
    ({"nodes=2": None}, r"flag name 'nodes=2' .*or '='"),
    ({"nodes": True}, r"run_args\['nodes'\] must be .*None for a flag without a value; got True"),
    ({"nodes": [1, 2]}, r"run_args\['nodes'\] must be"),
    ({"nodes": {"a": 1}}, r"run_args\['nodes'\] must be"),
    ({"comment": "a\nb"}, r"run_args\['comment'\] .*on one line"),
    ({"nodes": 1, "--nodes": 2}, r"run_args: 'nodes' and '--nodes' are the same flag"),
])
def test_flag_mapping_refuses(bad, why):
    refused(checks.flag_mapping, "run_args", bad, match=why)


# -- job_name -----------------------------------------------------------------------------------------


def test_job_name():
    assert checks.job_name("my job[1]/x") == "my_job_1__x"
    assert checks.job_name("a" * 100) == "a" * 64
    assert checks.job_name("a.b-c_d", max_len=200) == "a.b-c_d"
    assert checks.job_name("") == "simctl"
    assert checks.job_name("1st run", 15, letter_first=True) == "j1st_run"
    assert checks.job_name("x" * 20, 15, letter_first=True) == "x" * 15
    refused(checks.job_name, None, match=r"job name must be a string; got None")
