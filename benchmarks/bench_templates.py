"""Tagged-file benchmarks: read + parse + render a configured file with many tags.

    python benchmarks/bench_templates.py [--only CASES] [--tmpdir DIR] [--json PATH]

No peer: the baselines run in the same script on the same file.
  read     open(..., newline="").read() alone: the disk (page cache) floor
  re.sub   read, then one re.sub pass with a callback looking the value up
           (what a hand-written tag replacer does; same output, checked)

Cases and targets (exit status 1 if one is missed, 2 if simctl is not importable):
  t40k     40,000 tags (1.3 MB): simctl load + render (the first member)
           <= 4x the re.sub baseline; the render of a further member (the file
           already parsed, as for the rest of an ensemble) <= 0.5x re.sub
  t500k    500,000 tags (18 MB): the same; and, when t40k ran too, the time per
           tag at 500k <= 3x the time per tag at 40k (linear; the quadratic
           parser this replaced gave 12.5x by construction)

The file is namelist-like: one tag per line, 100 parameters of which 10 have
numeric names (``;1200;``), and every 100th line a ``x = 1;2;3`` that is text.
The --skip-peer / --peer-only / --peer-repeat flags are accepted and unused.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, bench_arg_parser, fmt_ratio, fmt_seconds, run_cases, time_call  # noqa: E402

CASES = ["t40k", "t500k"]
SIZES = {"t40k": 40_000, "t500k": 500_000}
TARGET_VS_RESUB = 4.0
TARGET_MEMBER_VS_RESUB = 0.5
TARGET_LINEAR = 3.0
NAMES = [f"p{i}" for i in range(90)] + [str(1200 + i) for i in range(10)]
PARAMS = {name: i * 1.5 for i, name in enumerate(NAMES)}
TAG_BODY = re.compile(r";([^;\n]+);")

_per_tag: dict[str, float] = {}


def _write_file(directory: str, n_tags: int) -> str:
    lines = []
    for i in range(n_tags):
        lines.append(f"  var_{i} = ;{NAMES[i % len(NAMES)]};  ! step {i}\n")
        if i % 100 == 0:
            lines.append("  x = 1;2;3\n")
    path = os.path.join(directory, "input.nml")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("".join(lines))
    return path


def _read(path: str) -> str:
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def _resub(path: str) -> str:
    values = {n: str(v) for n, v in PARAMS.items()}
    return TAG_BODY.sub(lambda m: values.get(m.group(1), m.group(0)), _read(path))


def _simctl(path: str) -> str:
    from simctl.core import templates

    return templates.load(path).render(PARAMS)


def _case(name: str, rep: Report, args: Any, run_simctl: bool) -> None:
    n_tags = SIZES[name]
    directory = tempfile.mkdtemp(prefix="simctl-bench-templates-")
    try:
        path = _write_file(directory, n_tags)
        size = os.path.getsize(path)
        budget = 10.0
        read_s = time_call(lambda _: _read(path), repeat=5, budget=budget)
        resub_s = time_call(lambda _: _resub(path), repeat=5, budget=budget)
        rep.info(f"{name} baselines", f"{size / 1e6:.1f} MB, {n_tags} tags: read {fmt_seconds(read_s)} | "
                 f"read + re.sub {fmt_seconds(resub_s)}", read_s=read_s, resub_s=resub_s, bytes=size)
        if not run_simctl:
            return
        from simctl.core import templates

        rep.check(f"{name} output", _simctl(path) == _resub(path), "simctl output equals the re.sub output")
        ours = time_call(lambda _: _simctl(path), repeat=5, budget=budget)
        rep.slowdown(name, ours, resub_s, TARGET_VS_RESUB, "re.sub", read_s=read_s)
        rep.info(f"{name} vs read", f"simctl {fmt_seconds(ours)} ({size / 1e6 / ours:.0f} MB/s) | read "
                 f"{fmt_seconds(read_s)} | ratio {fmt_ratio(ours / read_s)} (informational)")
        template = templates.load(path)
        template.render(PARAMS)
        member_s = time_call(lambda _: template.render(PARAMS), repeat=5, budget=budget)
        rep.slowdown(f"{name} next member", member_s, resub_s, TARGET_MEMBER_VS_RESUB, "re.sub")
        _per_tag[name] = ours / n_tags
        if name == "t500k" and "t40k" in _per_tag:
            growth = _per_tag["t500k"] / _per_tag["t40k"]
            rep.check(f"{name} linear", growth <= TARGET_LINEAR,
                      f"time per tag at 500k / at 40k = {growth:.2f} (target <= {TARGET_LINEAR:g})")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


CASE_FUNCS = {name: (lambda rep, args, run, name=name: _case(name, rep, args, run)) for name in CASES}


def main() -> int:
    args = bench_arg_parser(__doc__.splitlines()[0], CASES).parse_args()
    return run_cases("bench_templates", args, CASES, CASE_FUNCS)


if __name__ == "__main__":
    sys.exit(main())
