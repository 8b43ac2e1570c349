"""The generator: run directories, copied / symlinked / configured files, the
parameters record, unknown tags, overwrite rules, whole-or-nothing entity
directories, and inputs refused before anything is written."""

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
    """Leftover temporary entries (the generator's are dot-names; ``.simctl``,
    the experiment's own directory with its writer lock, is not one)."""
    return [str(p) for p in root.rglob(".*") if ".simctl" not in p.parts] if root.exists() else []


def params_file(d: Path) -> dict:
    """The recorded name and parameters of run directory ``d``: a model's own
    record, or a member's entry in its ensemble's record."""
    if (d / PARAMS_FILE).exists():
        return json.loads((d / PARAMS_FILE).read_text())
    return {"name": d.name, "params": json.loads((d.parent / PARAMS_FILE).read_text())[d.name]}


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


def test_params_recorded_once_per_ensemble_and_per_model(exp, rs, exp_path):
    ens = exp.create_ensemble("ens", params={"name": ["Ellie", "John"], "parameter": [2, 11]}, run_settings=rs)
    m = exp.create_model("m", rs, params={"a": 1})
    exp.generate(ens, m)
    record = json.loads((exp_path / "ens" / PARAMS_FILE).read_text())
    assert record == {mem.name: mem.params for mem in ens}
    assert record["ens_3"] == {"name": "John", "parameter": 11}
    assert not any((exp_path / "ens" / mem.name / PARAMS_FILE).exists() for mem in ens)
    assert json.loads((exp_path / "m" / PARAMS_FILE).read_text()) == {"name": "m", "params": {"a": 1}}


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


def test_configure_directory_keeps_its_tree(exp, rs, exp_path, write):
    write("conf/a.in", "a = ;x;\n")
    write("conf/sub/in.txt", "sub ;x;\n")
    write("conf/other/in.txt", "other ;x;\n")  # same name in another subdirectory
    write("shared/deep/c.in", "c ;x;\n")
    os.symlink(write("x").parent / "shared", write("x").parent / "conf" / "linked")  # followed
    ens = exp.create_ensemble("e", params={"x": [1, 2]}, run_settings=rs)
    ens.attach_generator_files(to_configure=str(write("x").parent / "conf"))
    exp.generate(ens)
    d = exp_path / "e" / "e_1"
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) == [
        "a.in", "linked/deep/c.in", "other/in.txt", "sub/in.txt"]
    assert (d / "sub" / "in.txt").read_text() == "sub 2\n"
    assert (d / "other" / "in.txt").read_text() == "other 2\n"
    assert (d / "linked" / "deep" / "c.in").read_text() == "c 2\n"
    assert not (d / "linked").is_symlink()


def test_configured_files_are_written_byte_for_byte(exp, rs, exp_path, write):
    conf = write("in.txt", b"x = ;x;\n\xc3\xa9\tend")
    m = exp.create_model("m", rs, params={"x": "a\r\nb"})  # no newline translation on writing
    m.attach_generator_files(to_configure=str(conf))
    exp.generate(m)
    assert (exp_path / "m" / "in.txt").read_bytes() == b"x = a\r\nb\n\xc3\xa9\tend"


def test_crlf_line_endings_are_kept(exp, rs, exp_path, write):
    conf = write("in.txt", b"x = ;x;\r\ny = 2\r\n")
    m = exp.create_model("m", rs, params={"x": 1})
    m.attach_generator_files(to_configure=str(conf))
    exp.generate(m)
    assert (exp_path / "m" / "in.txt").read_bytes() == b"x = 1\r\ny = 2\r\n"


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
    with pytest.raises(simctl.ConfigError, match=r"1 directory already exists: .*exp/e; pass overwrite=True"):
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


def test_regenerating_with_fewer_members_leaves_exactly_the_current_ones(exp, rs, exp_path, write):
    conf = write("in.txt", "x = ;x;\n")
    first = exp.create_ensemble("e", params={"x": [1, 2, 3]}, run_settings=rs)
    first.attach_generator_files(to_configure=str(conf))
    exp.generate(first)
    again = exp.create_ensemble("e", params={"x": [10]}, run_settings=rs)
    again.attach_generator_files(to_configure=str(conf))
    exp.generate(again, overwrite=True)
    assert sorted(p.name for p in (exp_path / "e").iterdir()) == ["e_0", PARAMS_FILE]
    assert json.loads((exp_path / "e" / PARAMS_FILE).read_text()) == {"e_0": {"x": 10}}
    assert (exp_path / "e" / "e_0" / "in.txt").read_text() == "x = 10\n"
    assert hidden(exp_path) == []


# -- whole or nothing ------------------------------------------------------------------------------


def test_a_member_that_fails_to_configure_leaves_nothing_of_the_call(exp, rs, exp_path, write):
    conf = write("in.txt", "x = ;x;\n")
    data = write("data.txt", "d")
    ok = exp.create_model("ok", rs)
    ens = exp.create_ensemble("e", params={"x": [1, Unprintable(), 3]}, run_settings=rs)
    ens.attach_generator_files(to_copy=str(data), to_configure=str(conf))
    with pytest.raises(RuntimeError, match="cannot print"):
        exp.generate(ok, ens)
    assert list(exp_path.iterdir()) == []  # neither the model written before it nor any member
    # the paths are the ones set at creation (<exp_path>/<name>, as in SmartSim), not changed by the failed call
    assert ok.path == str(exp_path / "ok") and ens.path == str(exp_path / "e")


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
    conf = write("tree/sub/in.txt", "1").parent.parent
    m.attach_generator_files(to_copy=str(write("sub", "a file named like a configured subdirectory")),
                             to_configure=str(conf))
    with pytest.raises(simctl.ConfigError, match=r"would overwrite each other.*\['sub'\]"):
        exp.generate(m)
    p = write(PARAMS_FILE, "{}")
    m.attach_generator_files(to_copy=str(p))
    with pytest.raises(simctl.ConfigError, match=f"{PARAMS_FILE}, which is the parameters record"):
        exp.generate(m)
    assert not exp_path.exists()


def test_two_entities_into_one_directory(exp, rs, exp_path):
    a, b = exp.create_model("same", rs), exp.create_model("same", rs)
    with pytest.raises(simctl.ConfigError, match=r"model 'same' and model 'same' would both be generated into "
                                                 r".*exp/same; give them different names"):
        exp.generate(a, b)
    assert not exp_path.exists()


@pytest.mark.parametrize("order", ["model first", "ensemble first"])
def test_a_model_and_an_ensemble_with_one_name(exp, rs, exp_path, order):
    m = exp.create_model("x", rs)
    ens = exp.create_ensemble("x", params={"a": [1, 2]}, run_settings=rs)
    with pytest.raises(simctl.ConfigError, match=r"(model 'x' and ensemble 'x'|ensemble 'x' and model 'x') "
                                                 r"would both be generated into .*exp/x; give them different"):
        exp.generate(*((m, ens) if order == "model first" else (ens, m)))
    assert not exp_path.exists()
    assert m.path == ens.path == str(exp_path / "x")  # set at creation (as in SmartSim), unchanged


@pytest.mark.parametrize("stream", ["out", "err"])
def test_an_input_named_like_the_models_output_is_refused(exp, rs, exp_path, write, stream):
    m = exp.create_model("m", rs)
    m.attach_generator_files(to_copy=str(write(f"m.{stream}", "input data")))
    with pytest.raises(simctl.ConfigError, match=rf"attached file .*src/m.{stream} would be written to "
                                                 rf".*exp/m/m.{stream}, which is the model's standard"):
        exp.generate(m)
    ens = exp.create_ensemble("e", params={"x": [1, 2]}, run_settings=rs)
    ens.attach_generator_files(to_configure=str(write(f"conf/e_1.{stream}", ";x;").parent))
    with pytest.raises(simctl.ConfigError, match=rf"model 'e_1': attached file .*conf/e_1.{stream} would be"):
        exp.generate(ens)
    assert not exp_path.exists()


def test_a_pipe_to_copy_or_configure_is_refused_up_front(exp, rs, exp_path, write, tmp_path):
    data = write("data/ok.txt", "ok").parent
    os.mkfifo(data / "pipe")  # reading it would block until someone writes
    m = exp.create_model("m", rs, params={"x": 1})
    m.attach_generator_files(to_copy=str(data))
    with pytest.raises(simctl.ConfigError, match=r"to copy .*data/pipe is not a regular file or directory"):
        exp.generate(m)
    os.mkfifo(tmp_path / "top-pipe")
    m.attach_generator_files(to_copy=str(tmp_path / "top-pipe"))
    with pytest.raises(simctl.ConfigError, match=r"to copy .*top-pipe is not a regular file"):
        exp.generate(m)
    conf = write("in.txt", "x = ;x;")
    m.attach_generator_files(to_configure=str(conf))
    conf.unlink()
    os.mkfifo(conf)  # replaced after it was attached
    with pytest.raises(simctl.ConfigError, match=r"to configure .*src/in.txt is not a regular file"):
        exp.generate(m)
    assert not exp_path.exists()
    with pytest.raises(simctl.ConfigError, match=r"to_configure directory .*data/pipe is not a regular file"):
        m.attach_generator_files(to_configure=str(data))
    with pytest.raises(simctl.ConfigError, match=r"file to configure .*in.txt is not a regular file"):
        m.attach_generator_files(to_configure=str(conf))


def test_copying_a_directory_that_holds_the_experiment_is_refused(exp, rs, exp_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # exp_path is tmp_path/exp: inside "."
    (tmp_path / "input.txt").write_text("x")
    m = exp.create_model("m", rs)
    m.attach_generator_files(to_copy=["."])
    with pytest.raises(simctl.ConfigError, match=rf"to_copy directory {tmp_path} contains the experiment "
                                                 rf"directory {exp_path}: the copy would copy itself"):
        exp.generate(m)
    assert not exp_path.exists()
    exp_path.mkdir()
    (exp_path / "old-run.out").write_text("from before")
    m.attach_generator_files(to_configure=["."])  # walks exp/ too
    with pytest.raises(simctl.ConfigError, match=rf"to_configure directory {tmp_path} contains the experiment"):
        exp.generate(m)
    assert [p.name for p in exp_path.iterdir()] == ["old-run.out"]


@pytest.mark.parametrize("target, why", [
    ("loop", "cannot follow .*conf/loop .*a symlink that loops or points nowhere"),
    ("nowhere", "cannot follow .*conf/loop .*a symlink that loops or points nowhere"),
    ("..", r"conf/loop/conf links back to .*src/conf, which contains it \(a symlink loop\)"),
    ("sub", r"conf/sub/again/loop links back to .*src/conf, which contains it"),
])
def test_a_symlink_loop_in_a_configure_directory_is_an_error(exp, rs, write, target, why):
    conf = write("conf/in.txt", "x").parent
    (conf / "sub" / "again").mkdir(parents=True)
    link = conf / "sub" / "again" / "loop" if target == "sub" else conf / "loop"
    os.symlink("../.." if target == "sub" else target, link)
    m = exp.create_model("m", rs)
    with pytest.raises(simctl.ConfigError, match=f"to_configure directory .*conf: .*{why}"):
        m.attach_generator_files(to_configure=str(conf))
    assert m.files == simctl.EntityFiles()


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
