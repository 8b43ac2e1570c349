"""The tag parser of files to configure: ``;NAME;`` tags (any parameter name),
inline value lists in both forms, configurable tags, byte-exact rendering, and
errors. Property tests for parse/render. Speed: benchmarks/bench_templates.py."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, strategies as st

import simctl
from simctl.core.templates import Ref, Template, inline_values, load


def render(text: str, params: dict, tag: str = ";", strict: bool = True) -> str:
    return Template.parse(text, "f.in", tag).render(params, strict=strict)


def test_model_guide_thermo_example():
    assert render("THERMO = ;THERMO;\n", {"THERMO": 1}) == "THERMO = 1\n"


def test_tags_are_replaced_everywhere_and_text_is_kept():
    text = "a=;a; b=;b;\n;a;;b; end;\n x;y"
    assert render(text, {"a": 1, "b": "two"}) == "a=1 b=two\n1two end;\n x;y"


def test_text_that_only_looks_like_tags_is_left_alone():
    text = "int i; i < n; i++; ;  ; ;1abc; ;not a tag; a;;b"
    t = Template.parse(text)
    assert t.refs == []
    assert t.render({}) == text


def test_configurable_tag():
    assert render("x = @x@; y = ;y;", {"x": 5}, tag="@") == "x = 5; y = ;y;"
    assert render("x = {{x}}", {"x": 5}, tag="{{") == "x = {{x}}"  # the same string both sides
    assert render("x = %%x%%", {"x": 5}, tag="%%") == "x = 5"


def test_empty_tag_is_an_error():
    with pytest.raises(simctl.ConfigError, match="tag must be a non-empty string"):
        Template.parse("x", tag="")


def test_unknown_tag_is_an_error_naming_it_and_the_parameters():
    with pytest.raises(simctl.ConfigError) as err:
        render("x = ;x;\ny = ;typo;", {"x": 1, "z": 2})
    msg = str(err.value)
    assert "f.in" in msg and "'typo'" in msg and "'x', 'z'" in msg and "unknown_tags='warn'" in msg
    assert "line 2" in msg


def test_unknown_tag_is_kept_with_a_warning_when_not_strict():
    text = "x = ;x;\ny = ;typo;\nT = ;[1, 2];\n;U=[3,4];"
    with pytest.warns(UserWarning) as caught:
        out = render(text, {"x": 1}, strict=False)
    assert sorted(str(w.message) for w in caught) == [
        f"f.in: tag {n!r} names no parameter; left as it is" for n in ("T", "U", "typo")]
    assert out == "x = 1\ny = ;typo;\nT = ;[1, 2];\n;U=[3,4];"  # unknown tags exactly as written


# -- inline value lists -------------------------------------------------------------------------


# -- any parameter name is a tag ----------------------------------------------------------------


def test_numeric_and_other_names_are_tags():
    text = "&nml\n n = ;1200;\n dt = ;5;\n a = ;x(1);\n b = ;a b;\n T = ;température;\n/\n"
    params = {"1200": 120, "5": 0.5, "x(1)": "one", "a b": 2, "température": 300}
    assert render(text, params) == "&nml\n n = 120\n dt = 0.5\n a = one\n b = 2\n T = 300\n/\n"


def test_parameter_names_need_not_be_strings():
    """create_model(params={1200: 120}) keeps the int key; its tag is ;1200;."""
    assert render("n = ;1200;", {1200: 120}) == "n = 120"


def test_numbers_between_tags_are_text_unless_they_name_a_parameter():
    text = "x = 1;2;3\nv = 1.5;2.5;3.5\nfor (i = 0; i < n; i++) {}\n"
    assert render(text, {"x": 0}) == text  # strict, yet no error for ;2; ;2.5; ; i < n;
    assert render(text, {"2": "B", " i < n": "C"}) == "x = 1B3\nv = 1.5;2.5;3.5\nfor (i = 0C i++) {}\n"


def test_overlapping_tags_are_read_left_to_right():
    assert render(";a;b;", {"a": 1, "b": 2}) == "1b;"
    assert render("x = 1;2;3;4", {"3": "C"}) == "x = 1;2C4"
    assert render("x = 1;2;3;4", {"2": "B", "3": "C"}) == "x = 1B3;4"
    assert render("x = 1;2;y;4", {"2": "B"}) == "x = 1By;4"  # ;y; lost its opening tag to ;2;
    with pytest.raises(simctl.ConfigError, match="tag 'y' names no parameter"):
        render("x = 1;2;y;4", {})  # an identifier-like tag naming no parameter is still an error


def test_names_that_are_not_one_line_or_empty_are_never_tags():
    text = "a;;b ;x\ny; ;x\ry;"
    assert render(text, {"": 1, "x\ny": 2, "x\ry": 3}) == text


def test_a_parameter_no_file_uses_is_fine():
    assert render("x = ;x;", {"x": 1, "1200": 2, "unused": 3}) == "x = 1"


# -- large files ---------------------------------------------------------------------------------


def test_many_tags_with_every_kind_of_gap():
    """The fast paths (one piece between tags, no shared tag strings) and the
    general ones (several pieces between tags, unknown tags kept) agree."""
    params = {f"p{j}": j for j in range(7)}
    lines = [f"v{i} = ;p{i % 7};  ! 1;2;3 ;{i % 3};\n" for i in range(3000)]
    t = Template.parse("".join(lines))

    def expected(p: dict, one: str) -> str:
        return "".join(f"v{i} = {p.get(f'p{i % 7}', f';p{i % 7};')}  ! 1;2;3 {one if i % 3 == 1 else f';{i % 3};'}\n"
                       for i in range(3000))

    assert t.render(params) == expected(params, ";1;")
    assert t.render({**params, "1": "X"}) == expected(params, "X")
    fewer = {k: v for k, v in params.items() if k != "p0"}
    with pytest.warns(UserWarning, match="tag 'p0' names no parameter"):
        assert t.render({**fewer, "1": "X"}, strict=False) == expected(fewer, "X")


# -- byte-exact rendering ------------------------------------------------------------------------

BODY = "\ufeffTHERMO = ;THERMO;\r\nname = 'Ellie ü ;name;'\r\n\r\nlf\nmac\r# fin: 1;2;3 ✓"
RAWS = [BODY.encode(), (BODY + "\r\n").encode()]  # no final newline; a final CRLF
RAW_PARAMS = {"THERMO": 10, "name": "Zoë"}


def rendered(raw: bytes) -> bytes:
    return raw.replace(b";THERMO;", b"10").replace(b";name;", "Zoë".encode())


@pytest.mark.parametrize("raw", RAWS)
def test_rendering_keeps_every_byte_but_the_tags(write, raw):
    """CRLF, LF and CR line endings, no final newline, a byte-order mark, non-ASCII text."""
    f = write("in.txt", raw)
    assert load(str(f)).render(RAW_PARAMS).encode("utf-8") == rendered(raw)


@pytest.mark.parametrize("raw", RAWS)
def test_generated_files_keep_every_byte_but_the_tags(exp, rs, exp_path, write, raw):
    f = write("in.txt", raw)
    m = exp.create_model("m", rs, params=RAW_PARAMS)
    m.attach_generator_files(to_configure=str(f))
    exp.generate(m)
    assert (exp_path / "m" / "in.txt").read_bytes() == rendered(raw)


def test_ensemble_guide_inline_form():
    t = Template.parse("THERMO = ;[10,11,12];\n")
    assert t.inline_values() == {"THERMO": (10, 11, 12)}
    assert t.render({"THERMO": 11}) == "THERMO = 11\n"


def test_explicit_inline_form_anywhere_on_a_line():
    t = Template.parse("set(;THERMO=[10, 11, 12];, ;P=['lo', 'hi'];)")
    assert t.inline_values() == {"THERMO": (10, 11, 12), "P": ("lo", "hi")}
    assert t.render({"THERMO": 10, "P": "hi"}) == "set(10, hi)"


def test_inline_forms_with_colon_dotted_names_and_json():
    t = Template.parse('a.b: ;[1.5, 2e3];\nflag = ;[true];\nname=;["x", "y"];', tag=";")
    assert t.inline_values() == {"a.b": (1.5, 2000.0), "flag": (True,), "name": ("x", "y")}
    assert Template.parse(";N=[null, 1];").inline_values() == {"N": (None, 1)}


def test_inline_lists_with_numeric_names():
    t = Template.parse("1200 = ;[1, 2];\n--steps=;[3];\nrun(;17=[4, 5];)\n")
    assert t.inline_values() == {"1200": (1, 2), "steps": (3,), "17": (4, 5)}
    assert t.render({"1200": 2, "steps": 3, "17": 5}) == "1200 = 2\n--steps=3\nrun(5)\n"


@pytest.mark.parametrize("text", [
    "first line\nX = ;" + "[" * 5000 + "]" * 5000 + ";",        # Python's parser and json give up
    "first line\n;X=" + "[" * 5000 + "1" + "]" * 5000 + ";",
    "first line\nX = ;" + "[" * 500 + "1" + "]" * 500 + ";",   # json reads it; too deep to use
])
def test_deeply_nested_inline_lists_are_a_config_error(text):
    with pytest.raises(simctl.ConfigError, match=r"conf.in:2: inline value list \[+\.\.\. nests lists more "
                                                 r"than 100 deep"):
        Template.parse(text, "conf.in")


def test_inline_lists_nested_100_deep_are_fine():
    t = Template.parse("X = ;[" + "[" * 99 + "1" + "]" * 99 + "];")
    assert len(t.inline_values()["X"]) == 1


def test_inline_list_without_a_name_is_an_error():
    with pytest.raises(simctl.ConfigError, match=r"f.in:2: inline list \[1,2\] has no parameter name"):
        Template.parse("ok\nprint(;[1,2];)", "f.in")


@pytest.mark.parametrize("text, why", [
    ("X = ;[1,,2];", "malformed inline value list"),
    (";X=[1, 2 3];", "malformed inline value list"),
    ("X = ;[];", "non-empty list"),
    (";X=[open];", "malformed inline value list"),
    ("X = ;[__import__('os')];", "malformed inline value list"),
])
def test_malformed_inline_lists(text, why):
    with pytest.raises(simctl.ConfigError, match=why) as err:
        Template.parse("first line\n" + text, "conf.in")
    assert "conf.in:2" in str(err.value)


def test_inline_values_across_files(write):
    a = write("a.in", "T = ;[1,2];")
    b = write("b.in", "again ;T=[1, 2]; and ;P=[5];")
    c = write("c.in", "T = ;[1,2,3];")
    assert inline_values([str(a), str(b)]) == {"T": (1, 2), "P": (5,)}
    with pytest.raises(simctl.ConfigError, match=r"'T' has different inline value lists in .*a.in and .*c.in"):
        inline_values([str(a), str(c)])


def test_inline_values_use_the_given_tag(write):
    f = write("a.in", "T = @[1,2]@ ;U=[3];")
    assert inline_values([str(f)], tag="@") == {"T": (1, 2)}
    assert inline_values([str(f)]) == {"U": (3,)}


def test_binary_files_cannot_be_configured(write):
    f = write("blob.bin", b"\xff\xfe\x00 ;x;")
    with pytest.raises(simctl.ConfigError, match="must be UTF-8 text; attach binary files with to_copy"):
        load(str(f))


# -- properties --------------------------------------------------------------------------------------

TAGS = st.sampled_from([";", "@", "%%", "<<", "$"])
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


def _literal(tag: str):
    return st.text(max_size=20).filter(lambda s: tag[0] not in s and tag[-1] not in s)


@given(TAGS, st.data())
def test_text_without_tags_is_unchanged(tag, data):
    text = data.draw(_literal(tag))
    t = Template.parse(text, tag=tag)
    assert t.refs == []
    assert t.render({"x": 1}) == text


@given(TAGS, st.data())
def test_render_replaces_each_tag_by_its_value(tag, data):
    parts = data.draw(st.lists(st.one_of(_literal(tag), NAMES.map(Ref)), max_size=8))
    values = {r.name: data.draw(st.integers() | st.text(max_size=5)) for r in parts if isinstance(r, Ref)}
    text = "".join(p if isinstance(p, str) else f"{tag}{p.name}{tag}" for p in parts)
    expected = "".join(p if isinstance(p, str) else str(values[p.name]) for p in parts)
    t = Template.parse(text, tag=tag)
    assert [r.name for r in t.refs] == [p.name for p in parts if isinstance(p, Ref)]
    assert t.render(values) == expected


@given(TAGS, st.data())
def test_unknown_tags_round_trip_unchanged(tag, data):
    """With no parameters and strict=False, render gives back the file as written,
    inline lists included."""
    item = st.one_of(
        _literal(tag),
        NAMES.map(lambda n: f"{tag}{n}{tag}"),
        st.tuples(NAMES, st.lists(st.integers(), min_size=1, max_size=4)).map(
            lambda nv: f"{tag}{nv[0]}={nv[1]!r}{tag}"),
    )
    text = "".join(data.draw(st.lists(item, max_size=6)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Template.parse(text, tag=tag).render({}, strict=False) == text


SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=";@%<$[]\n\r"),
                    max_size=4)


@given(NAMES, st.lists(st.integers() | st.floats(allow_nan=False, allow_infinity=False) | SAFE_TEXT
                       | st.booleans() | st.none(), min_size=1, max_size=6), TAGS)
def test_inline_lists_parse_back_to_their_values(name, values, tag):
    for text, rendered in ((f"{name} = {tag}{values!r}{tag}", f"{name} = {values[-1]}"),
                           (f"x {tag}{name}={values!r}{tag} y", f"x {values[-1]} y")):
        t = Template.parse(text, tag=tag)
        assert t.inline_values() == {name: tuple(values)}
        assert t.render({name: values[-1]}) == rendered


def test_names_with_inner_dots_and_dashes():
    t = Template.parse("tol = ;solver.tol; it = ;max-iter; not = ;x-; ;-y; solver.dt = ;[1, 2];")
    assert [r.name for r in t.refs] == ["solver.tol", "max-iter", "solver.dt"]
    assert t.render({"solver.tol": 1e-6, "max-iter": 50, "solver.dt": 2}) == \
        "tol = 1e-06 it = 50 not = ;x-; ;-y; solver.dt = 2"


def _name(tag: str):
    """Any name that can be a tag with ``tag`` (no tag characters, one line),
    except the ones that read as inline lists ([...] or NAME=[...])."""
    chars = st.characters(blacklist_categories=("Cs",), blacklist_characters=set(tag) | {"\n", "\r"})
    return st.text(chars, min_size=1, max_size=10).filter(lambda n: "=[" not in n and not n.startswith("["))


@given(TAGS, st.data())
def test_any_parameter_name_is_a_tag(tag, data):
    name = data.draw(_name(tag))
    before, after = data.draw(_literal(tag)), data.draw(_literal(tag))
    text = f"{before}{tag}{name}{tag}{after}{tag}{name}{tag}"
    assert render(text, {name: "V", "other": 1}, tag=tag) == f"{before}V{after}V"
