"""Parameter expansion: the built-in strategies, user callables, replicas,
laziness, and the errors bad parameters get. Property tests for the lazy
sequences."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings, strategies as st

import simctl
from simctl import Pick, Product, Repeat, Zip

SEED_PARAMS = {"name": ["Ellie", "John"], "parameter": [2, 11]}


# -- the reference documents' examples ---------------------------------------------------


def test_seed_example_all_perm_gives_four_members(exp, rs):
    ens = exp.create_ensemble("ensemble", params=SEED_PARAMS, run_settings=rs, perm_strategy="all_perm")
    assert len(ens) == 4
    assert [m.name for m in ens] == ["ensemble_0", "ensemble_1", "ensemble_2", "ensemble_3"]
    assert [m.params for m in ens] == [
        {"name": "Ellie", "parameter": 2}, {"name": "Ellie", "parameter": 11},
        {"name": "John", "parameter": 2}, {"name": "John", "parameter": 11}]


def test_seed_example_step_gives_two_members(exp, rs):
    bs = simctl.BatchSettings(nodes=2, time="10:00:00", batch_args={"distribution": "block", "exclusive": None})
    ens = exp.create_ensemble("ensemble", params=SEED_PARAMS, run_settings=rs, batch_settings=bs,
                              perm_strategy="step")
    assert len(ens) == 2
    assert [m.params for m in ens] == [{"name": "Ellie", "parameter": 2}, {"name": "John", "parameter": 11}]
    assert ens.batch_settings is bs


def test_seed_example_replicas_gives_four_identical_members(exp, rs):
    ens = exp.create_ensemble("ensemble-replica", replicas=4, run_settings=rs)
    assert len(ens) == 4
    assert [m.name for m in ens] == [f"ensemble-replica_{i}" for i in range(4)]
    assert all(m.params == {} and m.run_settings == rs for m in ens)


def test_default_strategy_is_all_perm(exp, rs):
    ens = exp.create_ensemble("e", params=SEED_PARAMS, run_settings=rs)
    assert ens.perm_strategy == "all_perm" and len(ens) == 4


def test_scalar_value_is_a_one_value_list(exp, rs):
    ens = exp.create_ensemble("e", params={"a": 5, "b": [1, 2], "c": "text", "d": range(2)}, run_settings=rs)
    assert [m.params for m in ens] == [
        {"a": 5, "b": b, "c": "text", "d": d} for b in (1, 2) for d in range(2)]


def test_replicas_with_params_copy_each_member(exp, rs):
    ens = exp.create_ensemble("e", params={"x": [1, 2]}, replicas=3, run_settings=rs)
    assert [m.params["x"] for m in ens] == [1, 1, 1, 2, 2, 2]
    assert len({m.name for m in ens}) == 6
    ens[0].params["x"] = 99
    assert ens[1].params["x"] == 1  # copies, not one shared dict


# -- random ----------------------------------------------------------------------------------


def test_random_draws_distinct_members_reproducibly(exp, rs):
    params = {"a": list(range(5)), "b": list("xyzw")}
    space = [dict(zip(params, c)) for c in itertools.product(*params.values())]
    one = exp.create_ensemble("r1", params=params, run_settings=rs, perm_strategy="random", n_models=7, seed=3)
    two = exp.create_ensemble("r2", params=params, run_settings=rs, perm_strategy="random", n_models=7, seed=3)
    other = exp.create_ensemble("r3", params=params, run_settings=rs, perm_strategy="random", n_models=7, seed=4)
    drawn = [m.params for m in one]
    assert len(drawn) == 7
    assert all(p in space for p in drawn)
    assert len({tuple(p.values()) for p in drawn}) == 7  # without replacement
    assert [m.params for m in two] == drawn
    assert [m.params for m in other] != drawn


def test_random_can_take_the_whole_space(exp, rs):
    ens = exp.create_ensemble("r", params={"a": [1, 2, 3]}, run_settings=rs, perm_strategy="random",
                              n_models=3, seed=0)
    assert sorted(m.params["a"] for m in ens) == [1, 2, 3]


def test_random_1000_from_a_space_of_10_to_the_12(exp, rs):
    params = {f"p{i}": list(range(10)) for i in range(12)}
    ens = exp.create_ensemble("big", params=params, run_settings=rs, perm_strategy="random",
                              n_models=1000, seed=7)
    members = [m.params for m in ens]
    assert len(members) == 1000
    assert len({tuple(p.values()) for p in members}) == 1000
    assert all(set(p) == set(params) and all(0 <= v < 10 for v in p.values()) for p in members)
    again = exp.create_ensemble("big2", params=params, run_settings=rs, perm_strategy="random",
                                n_models=1000, seed=7)
    assert list(again.iter_params()) == members


def test_random_needs_n_models_and_says_the_space_size(exp, rs, exp_path):
    params = {"a": [1, 2, 3], "b": [1, 2]}
    with pytest.raises(simctl.ConfigError, match=r"needs n_models.*6 combinations"):
        exp.create_ensemble("r", params=params, run_settings=rs, perm_strategy="random")
    with pytest.raises(simctl.ConfigError, match=r"n_models=7 is larger than the parameter space, which has 6"):
        exp.create_ensemble("r", params=params, run_settings=rs, perm_strategy="random", n_models=7)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(simctl.ConfigError, match="n_models must be a positive integer"):
            exp.create_ensemble("r", params=params, run_settings=rs, perm_strategy="random", n_models=bad)
    assert not exp_path.exists()


# -- errors ------------------------------------------------------------------------------------


def test_unknown_strategy_lists_the_installed_ones(exp, rs, plugs):
    class Mine:
        name = "mine"

        def expand(self, names, values, n_models=None, seed=None):
            return []

    class Plugin:
        @simctl.hookimpl
        def simctl_register_strategies(self):
            return [Mine()]

    plugs.register(Plugin(), name="mine-plugin")
    with pytest.raises(simctl.ConfigError) as err:
        exp.create_ensemble("e", params={"a": [1]}, run_settings=rs, perm_strategy="latin")
    msg = str(err.value)
    assert "'latin'" in msg
    for name in ("'all_perm'", "'step'", "'random'", "'mine'"):
        assert name in msg


def test_strategy_of_the_wrong_type(exp, rs):
    with pytest.raises(simctl.ConfigError, match=r"strategy name or a callable.*'all_perm'"):
        exp.create_ensemble("e", params={"a": [1]}, run_settings=rs, perm_strategy=3)


def test_step_with_lists_of_different_lengths(exp, rs):
    with pytest.raises(simctl.ConfigError, match=r"same number of values; got a: 2, b: 3"):
        exp.create_ensemble("e", params={"a": [1, 2], "b": [1, 2, 3]}, run_settings=rs, perm_strategy="step")


@pytest.mark.parametrize("replicas", [0, -2, True, 1.5, "3"])
def test_bad_replicas(exp, rs, replicas):
    with pytest.raises(simctl.ConfigError, match=r"replicas must be a positive integer"):
        exp.create_ensemble("e", replicas=replicas, run_settings=rs)


def test_empty_value_list(exp, rs):
    with pytest.raises(simctl.ConfigError, match=r"parameter 'b' has an empty list of values"):
        exp.create_ensemble("e", params={"a": [1], "b": []}, run_settings=rs)


def test_param_names_with_no_values_anywhere(exp, rs, exp_path):
    ens = exp.create_ensemble("e", params={"THERMO", "X"}, run_settings=rs)
    for use in (len, list, exp.generate):
        with pytest.raises(simctl.ConfigError, match=r"no values; give them in params=.*inline"):
            use(ens)
    assert not exp_path.exists()


def test_params_as_args_naming_a_missing_param(exp, rs):
    with pytest.raises(simctl.ConfigError, match=r"params_as_args names \['nope'\].*\['a'\]"):
        exp.create_ensemble("e", params={"a": [1]}, params_as_args=["nope"], run_settings=rs)


def test_params_without_run_settings(exp):
    with pytest.raises(simctl.ConfigError, match="need run_settings"):
        exp.create_ensemble("e", params={"a": [1]})


# -- user callables and in-process strategy plugins -----------------------------------------


def test_user_callable_strategy(exp, rs):
    seen = {}

    def corners(names, values, n_models):
        seen.update(names=names, values=values, n_models=n_models)
        return [{n: v[0] for n, v in zip(names, values)}, {n: v[-1] for n, v in zip(names, values)}]

    ens = exp.create_ensemble("e", params={"a": [1, 2, 3], "b": [4, 5]}, run_settings=rs,
                              perm_strategy=corners, n_models=9)
    assert [m.params for m in ens] == [{"a": 1, "b": 4}, {"a": 3, "b": 5}]
    assert seen == {"names": ["a", "b"], "values": [[1, 2, 3], [4, 5]], "n_models": 9}


def test_user_callable_may_return_a_generator(exp, rs):
    ens = exp.create_ensemble("e", params={"a": [1, 2, 3]}, run_settings=rs,
                              perm_strategy=lambda names, values, n: ({"a": v} for v in reversed(values[0])))
    assert [m.params["a"] for m in ens] == [3, 2, 1]


def test_user_callable_returning_non_dicts(exp, rs):
    with pytest.raises(simctl.ConfigError, match="expected dicts"):
        exp.create_ensemble("e", params={"a": [1]}, run_settings=rs, perm_strategy=lambda n, v, k: [(1,)])
    with pytest.raises(simctl.ConfigError, match="expected a sequence or iterable"):
        exp.create_ensemble("e", params={"a": [1]}, run_settings=rs, perm_strategy=lambda n, v, k: None)


def test_builtin_strategies_follow_the_protocol(plugs):
    for name in ("all_perm", "step", "random"):
        strat = plugs.get("strategy", name)
        assert isinstance(strat, simctl.Strategy)
        assert strat.name == name


# -- laziness -------------------------------------------------------------------------------------


def test_expansion_is_lazy(exp, rs, recorder):
    params = {f"p{i}": list(range(10)) for i in range(12)}
    ens = exp.create_ensemble("huge", params=params, run_settings=rs)
    assert len(ens) == 10**12
    assert ens.space()[10**12 - 1] == {f"p{i}": 9 for i in range(12)}
    assert ens.space()[123] == {**{f"p{i}": 0 for i in range(9)}, "p9": 1, "p10": 2, "p11": 3}
    first = list(itertools.islice(ens.iter_params(), 3))
    assert [p["p11"] for p in first] == [0, 1, 2]
    created = [c["entity"] for c in recorder.of("simctl_entity_created")]
    assert created == [ens]  # the ensemble only: not one member was made


# -- property tests of the lazy sequences ------------------------------------------------------------

values_lists = st.lists(st.lists(st.integers(), min_size=1, max_size=4), min_size=1, max_size=4)


@given(values_lists)
def test_product_matches_itertools_product(values):
    names = [f"n{i}" for i in range(len(values))]
    prod = Product(names, values)
    expected = [dict(zip(names, c)) for c in itertools.product(*values)]
    assert len(prod) == len(expected)
    assert [prod[i] for i in range(len(prod))] == expected
    assert list(prod) == expected
    assert [prod[-i - 1] for i in range(len(prod))] == expected[::-1]
    for bad in (len(prod), -len(prod) - 1):
        with pytest.raises(IndexError):
            prod[bad]


@given(st.integers(1, 5), st.integers(0, 5), st.data())
def test_zip_takes_the_ith_value_of_each(n_params, length, data):
    values = [data.draw(st.lists(st.integers(), min_size=length, max_size=length)) for _ in range(n_params)]
    names = [f"n{i}" for i in range(n_params)]
    z = Zip(names, values)
    expected = [dict(zip(names, c)) for c in zip(*values)]
    assert len(z) == length
    assert list(z) == expected == [z[i] for i in range(length)]


@given(st.lists(st.integers(0, 4), min_size=2, max_size=4).filter(lambda ls: len(set(ls)) > 1))
def test_zip_rejects_unequal_lengths(lengths):
    with pytest.raises(simctl.ConfigError, match="same number of values"):
        Zip([f"n{i}" for i in range(len(lengths))], [[0] * k for k in lengths])


@given(values_lists, st.data())
def test_pick_reads_the_chosen_indices(values, data):
    names = [f"n{i}" for i in range(len(values))]
    base = Product(names, values)
    idx = data.draw(st.lists(st.integers(0, len(base) - 1), max_size=10))
    pick = Pick(base, idx)
    assert len(pick) == len(idx)
    assert list(pick) == [base[i] for i in idx] == [pick[j] for j in range(len(idx))]


@given(values_lists, st.integers(1, 4))
def test_repeat_copies_each_member_in_a_row(values, times):
    names = [f"n{i}" for i in range(len(values))]
    base = Product(names, values)
    rep = Repeat(base, times)
    expected = [p for p in base for _ in range(times)]
    assert len(rep) == len(expected)
    assert list(rep) == expected == [rep[i] for i in range(len(rep))]


@settings(max_examples=50)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=8), st.integers(0, 2**32), st.data())
def test_random_strategy_draws_without_replacement(sizes, seed, data):
    from simctl.plugins.strategies.random import RandomPick  # the plugin itself, not the core

    names = [f"n{i}" for i in range(len(sizes))]
    values = [list(range(k)) for k in sizes]
    space = Product(names, values)
    n = data.draw(st.integers(1, min(len(space), 50)))
    drawn = list(RandomPick().expand(names, values, n, seed))
    assert len(drawn) == n
    assert len({tuple(p.values()) for p in drawn}) == n
    assert all(set(p) == set(names) and all(p[k] in values[i] for i, k in enumerate(names)) for p in drawn)
    assert list(RandomPick().expand(names, values, n, seed)) == drawn


def test_random_index_draws_are_uniform_enough():
    """Sanity of the index decoding: every combination of a small space is hit
    when drawing it whole under many seeds, in varying orders."""
    from simctl.plugins.strategies.random import RandomPick

    orders = {tuple(tuple(p.values()) for p in RandomPick().expand(["a", "b"], [[1, 2], [3, 4, 5]], 6, s))
              for s in range(30)}
    assert all(sorted(o) == sorted(itertools.product([1, 2], [3, 4, 5])) for o in orders)
    assert len(orders) > 10


def test_random_with_a_seed_leaves_the_global_generator_alone():
    from simctl.plugins.strategies.random import RandomPick

    state = random.getstate()
    RandomPick().expand(["a"], [list(range(100))], 10, seed=1)
    assert random.getstate() == state


def test_values_given_as_a_set_are_refused(exp, rs):
    with pytest.raises(simctl.ConfigError, match=r"parameter 'a': values given as a set have no order.*\[1, 2\]"):
        exp.create_ensemble("e", params={"a": {2, 1}}, run_settings=rs)


def test_members_never_share_parameter_dicts(exp, rs):
    shared = {"a": 1}
    ens = exp.create_ensemble("e", params={"a": [1]}, params_as_args=["a"], run_settings=rs,
                              perm_strategy=lambda names, values, n: [shared, shared])
    first, second = list(ens)
    first.params["a"] = 2
    first.params_as_args.clear()
    assert second.params == {"a": 1} and second.params_as_args == ["a"]
    assert shared == {"a": 1}


# -- values that are not lists, names that are not strings --------------------------------------


@pytest.mark.parametrize("values", [
    map(int, ["1", "2"]),
    (v for v in (1, 2)),
    {"k1": 1, "k2": 2}.values(),
    iter([1, 2]),
    itertools.islice(itertools.count(1), 2),
])
def test_any_finite_iterable_of_values(exp, rs, values):
    ens = exp.create_ensemble("e", params={"x": values}, run_settings=rs)
    assert [m.params["x"] for m in ens] == [1, 2]  # not one member holding '<map object ...>'


def test_strings_and_bytes_stay_single_values():
    from simctl.core.expansion import as_values

    assert as_values("s", "abc") == ["abc"]
    assert as_values("n", 5) == [5]
    # one value, but not one simctl can write as text (issue 16): refused, not written as b'ab' or None
    with pytest.raises(simctl.ConfigError, match="bytes would be written as b.ab."):
        as_values("b", b"ab")
    with pytest.raises(simctl.ConfigError, match="None has no text"):
        as_values("none", None)


def test_a_dict_of_values_is_ambiguous(exp, rs):
    with pytest.raises(simctl.ConfigError, match=r"parameter 'x': values given as a dict are ambiguous"):
        exp.create_ensemble("e", params={"x": {"a": 1, "b": 2}}, run_settings=rs)


def test_an_endless_iterator_of_values_is_refused(exp, rs):
    with pytest.raises(simctl.ConfigError, match=r"parameter 'x' gave more than 1,000,000 items"):
        exp.create_ensemble("e", params={"x": itertools.count()}, run_settings=rs)


def test_param_values_refuses_names_that_are_not_strings():
    from simctl.core.expansion import param_values

    assert param_values({"a": (1, 2), "b": 3}) == {"a": [1, 2], "b": [3]}
    assert param_values({"b", "a"}) == {"a": None, "b": None}
    assert param_values(None) == {}
    with pytest.raises(simctl.ConfigError, match=r"names must be non-empty strings; got 1 \(int\), which would "
                                                 r"be the same name as '1'"):
        param_values({1: [1], "1": [2]})
    with pytest.raises(simctl.ConfigError, match=r"names must be non-empty strings; got 1 \(int\), which would "
                                                 r"be the same name as '1'"):
        param_values({"1": [2], 1: [1]})
    with pytest.raises(simctl.ConfigError, match=r"names must be non-empty strings; got \('a', 'b'\) \(tuple\)"):
        param_values({("a", "b"): [1]})
    with pytest.raises(simctl.ConfigError, match="names must be non-empty strings; got ''"):
        param_values({"": [1]})
    with pytest.raises(simctl.ConfigError, match="names must be non-empty strings; got 1"):
        param_values({1, "a"})  # was a TypeError from sorting
    with pytest.raises(simctl.ConfigError, match="parameter 'a' is named twice"):
        param_values(["a", "b", "a"])
    with pytest.raises(simctl.ConfigError, match=r"params must be a dict .* got 'abc' \(str\)"):
        param_values("abc")


# -- what strategies return ------------------------------------------------------------------------


def test_a_strategy_returning_an_endless_iterator_is_refused(exp, rs, exp_path):
    def forever(names, values, n_models):
        return itertools.repeat({"a": 1})

    with pytest.raises(simctl.ConfigError, match=r"strategy .*forever.* gave more than 1,000,000 items"):
        exp.create_ensemble("e", params={"a": [1]}, run_settings=rs, perm_strategy=forever)
    assert not exp_path.exists()


def test_a_strategy_plugin_returning_an_endless_generator_is_refused(exp, rs, plugs):
    class Endless:
        name = "endless"

        def expand(self, names, values, n_models=None, seed=None):
            return ({"a": i} for i in itertools.count())

    class Plugin:
        @simctl.hookimpl
        def simctl_register_strategies(self):
            return [Endless()]

    plugs.register(Plugin(), name="endless-plugin")
    with pytest.raises(simctl.ConfigError, match="strategy 'endless' gave more than 1,000,000 items"):
        exp.create_ensemble("e", params={"a": [1]}, run_settings=rs, perm_strategy="endless")


def test_as_sequence_reads_at_most_the_limit():
    from simctl.core.expansion import as_sequence

    assert as_sequence(({"i": i} for i in itertools.count()), "'s'", limit=3) == [{"i": 0}, {"i": 1}, {"i": 2}]
    seq = Product(["a"], [[1, 2, 3, 4]])
    assert as_sequence(seq, "'s'", limit=2) is seq  # a sequence is kept whole, lazily


def test_every_member_read_from_an_iterator_must_be_a_dict(exp, rs):
    with pytest.raises(simctl.ConfigError, match="members of type NoneType; expected dicts"):
        exp.create_ensemble("e", params={"a": [1]}, run_settings=rs,
                            perm_strategy=lambda n, v, k: iter([{"a": 1}, None]))
    with pytest.raises(simctl.ConfigError, match="expected a sequence or iterable of dicts"):
        exp.create_ensemble("e", params={"a": [1]}, run_settings=rs, perm_strategy=lambda n, v, k: {"a": 1})


@pytest.mark.parametrize("seed", [[1, 2], {"s": 1}, 1.5, True, b"x"])
def test_random_seed_of_the_wrong_type(exp, rs, seed):
    with pytest.raises(simctl.ConfigError, match=r"seed must be an int \(or a str\)"):
        exp.create_ensemble("r", params={"a": [1, 2]}, run_settings=rs, perm_strategy="random",
                            n_models=1, seed=seed)


def test_random_seed_may_be_a_string(exp, rs):
    one = exp.create_ensemble("r", params={"a": list(range(9))}, run_settings=rs, perm_strategy="random",
                              n_models=4, seed="run-1")
    two = exp.create_ensemble("r2", params={"a": list(range(9))}, run_settings=rs, perm_strategy="random",
                              n_models=4, seed="run-1")
    assert list(one.iter_params()) == list(two.iter_params())
