"""The generator: run directories, copied / symlinked / configured files, the
parameters file, unknown tags, overwrite rules, and whole-or-nothing member
directories."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

import simctl
from simctl.core.generator import PARAMS_FILE


class Unprintable:
    """A parameter value that cannot be written into a file."""

    def __str__(self) -> str:
        raise RuntimeError("cannot print this value")

    def __repr__(self) -> str:
        return "Unprintable()"


def hidden(root: Path) -> list[str]:
    """Leftover temporary entries (the generator's are dot-names)."""
    return [str(p) for p in root.rglob(".*")] if root.exists() else []


def params_file(d: Path) -> dict:
    return json.loads((d / PARAMS_FILE).read_text())


# -- layout and files ----------------------------------------------------------------------------


def test_model_and_ensemble_directories(exp, rs, exp_path):
    m = exp.create_model("model", rs, params={"a": 1})
    ens = exp.create_ensemble("ens", params={"x": [1, 2]}, run_settings=rs)
    dirs = exp.generate(m, ens)
    assert dirs == [str(exp_path / "model"), str(exp_path / "ens" / "ens_0"), str(exp_path / "ens" / "ens_1")]
    assert all(Path(d).is_dir() for d in dirs)
    assert m.path == dirs[0]
    assert [mem.path for mem in ens] == dirs[1:]
    assert ens.path == str(exp_path / "ens")
    assert hidden(exp_path) == []


def test_params_file_in_each_member_directory(exp, rs, exp_path):
    ens = exp.create_ensemble("ens", params={"name": ["Ellie", "John"], "parameter": [2, 11]}, run_settings=rs)
    exp.generate(ens)
    got = [params_file(exp_path / "ens" / f"ens_{i}") for i in range(4)]
    assert got == [{"name": m.name, "params": m.params} for m in ens]
    assert got[3] == {"name": "ens_3", "params": {"name": "John", "parameter": 11}}


def test_copy_files_and_whole_directories(exp, rs, exp_path, write):
    data = write("data.txt", "payload")
    write("mesh/grid.dat", b"\x00\x01binary")
    write("mesh/deep/er/leaf.txt", "leaf")
    os.symlink("grid.dat", write("x").parent / "mesh" / "link-to-grid")
    script = write("run.sh", "#!/bin/sh\necho hi\n", mode=0o755)
    m = exp.create_model("m", rs)
    m.attach_generator_files(to_copy=[str(data), str(data.parent / "mesh"), str(script)])
    exp.generate(m)
    d = exp_path / "m"
    assert (d / "data.txt").read_text() == "payload"
    assert (d / "mesh" / "grid.dat").read_bytes() == b"\x00\x01binary"
    assert (d / "mesh" / "deep" / "er" / "leaf.txt").read_text() == "leaf"
    assert os.readlink(d / "mesh" / "link-to-grid") == "grid.dat"  # links inside copied dirs stay links
    assert os.stat(d / "run.sh").st_mode & stat.S_IXUSR
    assert not (d / "data.txt").is_symlink()
    (d / "data.txt").write_text("changed")
    assert data.read_text() == "payload"  # a copy, not the original


def test_symlinks(exp, rs, exp_path, write):
    big = write("big.h5", "huge")
    tree = write("inputs/a.txt", "a").parent
    m = exp.create_model("m", rs)
    m.attach_generator_files(to_symlink=[str(big), str(tree)])
    exp.generate(m)
    d = exp_path / "m"
    assert (d / "big.h5").is_symlink() and os.readlink(d / "big.h5") == str(big)
    assert (d / "inputs").is_symlink() and (d / "inputs" / "a.txt").read_text() == "a"


def test_configured_files(exp, rs, exp_path, write):
    conf = write("in.nml", "&run\n steps = ;steps;\n name = ';name;'\n/\n", mode=0o640)
    m = exp.create_model("m", rs, params={"steps": 100, "name": "Ellie"})
    m.attach_generator_files(to_configure=str(conf))
    exp.generate(m)
    out = exp_path / "m" / "in.nml"
    assert out.read_text() == "&run\n steps = 100\n name = 'Ellie'\n/\n"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    assert conf.read_text().startswith("&run\n steps = ;steps;")  # the source is untouched


def test_model_guide_thermo_example(exp, rs, exp_path, write):
    params_inputs = write("params_inputs.txt", "THERMO = ;THERMO;\n")
    example_model = exp.create_model("model", rs, params={"THERMO": 1})
    example_model.attach_generator_files(to_configure=str(params_inputs))
    exp.generate(example_model)
    assert (exp_path / "model" / "params_inputs.txt").read_text() == "THERMO = 1\n"


@pytest.mark.parametrize("line", ["THERMO = ;[10,11,12];", ";THERMO=[10,11,12];"])
def test_ensemble_guide_inline_example(exp, rs, exp_path, write, line):
    conf = write("configure_inputs.txt", f"{line}\n")
    ens = exp.create_ensemble("ensemble", run_settings=rs, params={"THERMO"}, perm_strategy="all_perm")
    ens.attach_generator_files(to_configure=str(conf))
    assert len(ens) == 3
    exp.generate(ens)
    prefix = "THERMO = " if line.startswith("THERMO") else ""
    for i, value in enumerate((10, 11, 12)):
        d = exp_path / "ensemble" / f"ensemble_{i}"
        assert (d / "configure_inputs.txt").read_text() == f"{prefix}{value}\n"
        assert params_file(d)["params"] == {"THERMO": value}


def test_inline_lists_and_plain_tags_in_one_file(exp, rs, exp_path, write):
    conf = write("in.txt", "T = ;[1,2];\nP = ;P;\n")
    ens = exp.create_ensemble("e", run_settings=rs, params=["T"])
    ens.attach_generator_files(to_configure=str(conf))
    with pytest.raises(simctl.ConfigError, match="'P' names no parameter"):
        exp.generate(ens)
    assert not exp_path.exists()
    both = exp.create_ensemble("both", run_settings=rs, params=["T", "P"])
    with pytest.raises(simctl.ConfigError, match=r"\['P'\] have no values"):
        both.attach_generator_files(to_configure=str(conf))


def test_configurable_tag_with_inline_lists(exp, rs, exp_path, write):
    conf = write("in.txt", "T = @[1,2]@\nx = @x@; keep ;x; as text\n")
    conf2 = write("in2.txt", "x = @[7, 8]@\n")
    ens = exp.create_ensemble("e", run_settings=rs, params=["T", "x"])  # a list: the order is ours
    with pytest.raises(simctl.ConfigError, match="have no values.*ensemble.tag"):
        ens.attach_generator_files(to_configure=[str(conf), str(conf2)])
    ens.tag = "@"
    ens.attach_generator_files(to_configure=[str(conf), str(conf2)])
    given = exp.create_ensemble("f", run_settings=rs, params={"T": [5], "x": [0]})
    given.attach_generator_files(to_configure=str(conf))
    exp.generate(ens, given, tag="@")
    assert [m.params for m in ens] == [{"T": 1, "x": 7}, {"T": 1, "x": 8}, {"T": 2, "x": 7}, {"T": 2, "x": 8}]
    assert (exp_path / "e" / "e_3" / "in.txt").read_text() == "T = 2\nx = 8; keep ;x; as text\n"
    assert (exp_path / "e" / "e_3" / "in2.txt").read_text() == "x = 8\n"
    assert (exp_path / "f" / "f_0" / "in.txt").read_text() == "T = 5\nx = 0; keep ;x; as text\n"


def test_generate_tag_must_match_the_inline_tag(exp, rs, exp_path, write):
    conf = write("in.txt", "T = ;[1,2];\n")
    ens = exp.create_ensemble("e", run_settings=rs, params={"T"})
    ens.attach_generator_files(to_configure=str(conf))
    with pytest.raises(simctl.ConfigError, match="with tag ';', but generate\\(\\) was given tag='@'"):
        exp.generate(ens, tag="@")
    assert not exp_path.exists()
    exp.generate(ens)
    assert (exp_path / "e" / "e_1" / "in.txt").read_text() == "T = 2\n"


# -- unknown tags -------------------------------------------------------------------------------


def test_unknown_tag_is_an_error_and_nothing_is_written(exp, rs, exp_path, write):
    conf = write("in.txt", "x = ;x;\ny = ;y;\n")
    ok = exp.create_model("ok", rs)
    m = exp.create_model("m", rs, params={"x": 1})
    m.attach_generator_files(to_configure=str(conf))
    with pytest.raises(simctl.ConfigError, match=r"in.txt: tag 'y' names no parameter; parameters are 'x'"):
        exp.generate(ok, m)
    assert not exp_path.exists()


def test_unknown_tag_warns_when_asked(exp, rs, exp_path, write):
    conf = write("in.txt", "x = ;x;\ny = ;y;\n")
    m = exp.create_model("m", rs, params={"x": 1})
    m.attach_generator_files(to_configure=str(conf))
    with pytest.warns(UserWarning, match="tag 'y' names no parameter"):
        exp.generate(m, unknown_tags="warn")
    assert (exp_path / "m" / "in.txt").read_text() == "x = 1\ny = ;y;\n"


@pytest.mark.parametrize("kwargs, why", [
    ({"unknown_tags": "ignore"}, "unknown_tags must be 'error' or 'warn'"),
    ({"tag": ""}, "tag must be a non-empty string"),
])
def test_bad_generate_options(exp, rs, exp_path, kwargs, why):
    with pytest.raises(simctl.ConfigError, match=why):
        exp.generate(exp.create_model("m", rs), **kwargs)
    assert not exp_path.exists()


# -- overwriting ----------------------------------------------------------------------------------


def test_never_overwrites_without_overwrite_true(exp, rs, exp_path, write, snapshot):
    conf = write("in.txt", "x = ;x;\n")
    ens = exp.create_ensemble("e", params={"x": [1, 2, 3]}, run_settings=rs)
    ens.attach_generator_files(to_configure=str(conf))
    exp.generate(ens)
    (exp_path / "e" / "e_1" / "result.out").write_text("precious")
    shutil.rmtree(exp_path / "e" / "e_2")  # one member missing: still nothing may be written
    other = exp.create_model("other", rs)
    before = snapshot(exp_path)
    with pytest.raises(simctl.ConfigError, match=r"2 run directories already exist: .*e_0.*e_1.*overwrite=True"):
        exp.generate(other, ens)
    assert snapshot(exp_path) == before


def test_overwrite_true_replaces_whole_directories(exp, rs, exp_path, write):
    conf = write("in.txt", "x = ;x;\n")
    ens = exp.create_ensemble("e", params={"x": [1, 2]}, run_settings=rs)
    ens.attach_generator_files(to_configure=str(conf))
    exp.generate(ens)
    (exp_path / "e" / "e_0" / "stale.out").write_text("old run")
    again = exp.create_ensemble("e", params={"x": [10, 20]}, run_settings=rs)
    again.attach_generator_files(to_configure=str(conf))
    exp.generate(again, overwrite=True)
    assert (exp_path / "e" / "e_0" / "in.txt").read_text() == "x = 10\n"
    assert not (exp_path / "e" / "e_0" / "stale.out").exists()
    assert params_file(exp_path / "e" / "e_1")["params"] == {"x": 20}
    assert hidden(exp_path) == []


def test_overwrite_replaces_a_file_in_the_way(exp, rs, exp_path):
    exp_path.mkdir()
    (exp_path / "m").write_text("a file where the directory goes")
    m = exp.create_model("m", rs)
    with pytest.raises(simctl.ConfigError, match="already exist"):
        exp.generate(m)
    exp.generate(m, overwrite=True)
    assert (exp_path / "m").is_dir() and (exp_path / "m" / PARAMS_FILE).exists()


# -- whole or nothing ------------------------------------------------------------------------------


def test_a_member_that_fails_to_configure_leaves_no_partial_directory(exp, rs, exp_path, write):
    conf = write("in.txt", "x = ;x;\n")
    data = write("data.txt", "d")
    ens = exp.create_ensemble("e", params={"x": [1, Unprintable(), 3]}, run_settings=rs)
    ens.attach_generator_files(to_copy=str(data), to_configure=str(conf))
    with pytest.raises(RuntimeError, match="cannot print"):
        exp.generate(ens)
    assert not (exp_path / "e" / "e_1").exists()
    for d in (exp_path / "e").iterdir():  # whatever was written is whole
        assert sorted(p.name for p in d.iterdir()) == sorted(["data.txt", "in.txt", PARAMS_FILE])
        assert (d / "in.txt").read_text() == f"x = {params_file(d)['params']['x']}\n"
    assert hidden(exp_path) == []


def test_a_failed_overwrite_keeps_the_previous_directory(exp, rs, exp_path, write):
    conf = write("in.txt", "x = ;x;\n")
    first = exp.create_ensemble("e", params={"x": [1, 2]}, run_settings=rs)
    first.attach_generator_files(to_configure=str(conf))
    exp.generate(first)
    second = exp.create_ensemble("e", params={"x": [10, Unprintable()]}, run_settings=rs)
    second.attach_generator_files(to_configure=str(conf))
    with pytest.raises(RuntimeError):
        exp.generate(second, overwrite=True)
    assert (exp_path / "e" / "e_1" / "in.txt").read_text() == "x = 2\n"  # the old one, whole
    assert params_file(exp_path / "e" / "e_1")["params"] == {"x": 2}
    assert hidden(exp_path) == []


def test_a_file_that_cannot_be_copied_leaves_no_directory(exp, rs, exp_path, write):
    fifo = write("x").parent / "pipe"
    os.mkfifo(fifo)
    m = exp.create_model("m", rs)
    m.attach_generator_files(to_copy=str(fifo))
    with pytest.raises(OSError, match="named pipe"):
        exp.generate(m)
    assert not (exp_path / "m").exists()
    assert hidden(exp_path) == []


# -- errors before anything is written ----------------------------------------------------------------


def test_attached_file_removed_before_generate(exp, rs, exp_path, write):
    f = write("in.txt", "x")
    m = exp.create_model("m", rs)
    m.attach_generator_files(to_copy=str(f))
    f.unlink()
    with pytest.raises(simctl.ConfigError, match=r"attached file .*in.txt no longer exists"):
        exp.generate(m)
    assert not exp_path.exists()


def test_attachments_that_would_collide(exp, rs, exp_path, write):
    a, b = write("a/in.txt", "1"), write("b/in.txt", "2")
    m = exp.create_model("m", rs)
    m.attach_generator_files(to_copy=str(a), to_symlink=str(b))
    with pytest.raises(simctl.ConfigError, match=r"would overwrite each other.*\['in.txt'\]"):
        exp.generate(m)
    p = write(PARAMS_FILE, "{}")
    m.attach_generator_files(to_copy=str(p))
    with pytest.raises(simctl.ConfigError, match="would overwrite each other"):
        exp.generate(m)
    assert not exp_path.exists()


def test_two_entities_into_one_directory(exp, rs, exp_path):
    a, b = exp.create_model("same", rs), exp.create_model("same", rs)
    with pytest.raises(simctl.ConfigError, match="two entities would be generated into"):
        exp.generate(a, b)
    assert not exp_path.exists()


def test_generate_takes_entities_only(exp, exp_path):
    with pytest.raises(simctl.ConfigError, match="expected a Model, an Ensemble or another entity, got str"):
        exp.generate("model")
    assert not exp_path.exists()


def test_lists_of_entities_are_accepted(exp, rs, exp_path):
    a, b = exp.create_model("a", rs), exp.create_model("b", rs)
    assert exp.generate([a, b]) == [str(exp_path / "a"), str(exp_path / "b")]


def test_malformed_inline_list_in_an_attached_file(exp, rs, exp_path, write):
    conf = write("in.txt", "ok = 1\nTHERMO = ;[10, 11,, 12];\n")
    ens = exp.create_ensemble("e", run_settings=rs, params={"THERMO"})
    with pytest.raises(simctl.ConfigError, match=r"in.txt:2: malformed inline value list '\[10, 11,, 12\]'"):
        ens.attach_generator_files(to_configure=str(conf))
    m = exp.create_model("m", rs, params={"THERMO": 1})
    m.attach_generator_files(to_configure=str(conf))
    with pytest.raises(simctl.ConfigError, match="malformed inline value list"):
        exp.generate(m)
    assert not exp_path.exists()


def test_dotted_parameter_names_are_configured(exp, rs, exp_path, write):
    conf = write("in.yaml", "solver:\n  tol: ;solver.tol;\n")
    ens = exp.create_ensemble("e", params={"solver.tol": [1e-3, 1e-6]}, run_settings=rs)
    ens.attach_generator_files(to_configure=str(conf))
    exp.generate(ens)
    assert (exp_path / "e" / "e_1" / "in.yaml").read_text() == "solver:\n  tol: 1e-06\n"
