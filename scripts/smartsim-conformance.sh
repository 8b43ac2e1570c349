#!/usr/bin/env bash
# SmartSim's own tests against simctl's SmartSim layer (issue 19's conformance job; optional, not in test.sh).
# Takes SmartSim's tests from a snapshot at run time (never copied into this repository), puts simctl's
# fixture shim (tests/compat/smartsim_conftest.py) beside them as their conftest.py, and runs the files
# whose subjects exist here (local launcher, settings, generator, store and client without RedisAI) with
# `import smartsim` forced to the layer. Prints pass/fail counts and the failures grouped by cause;
# then runs SmartSim's doc examples unchanged (tests/compat/conformance_doc_examples.py).
#   SMARTSIM_REPO   a SmartSim git directory (default: /work/.mirror/CrayLabs+SmartSim/repo, else a
#                   shallow clone from GitHub into .cache/)
#   extra arguments go to pytest (e.g. -k settings, or test file names to run only those)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=${SMARTSIM_REPO:-/work/.mirror/CrayLabs+SmartSim/repo}
if [ ! -d "$repo" ]; then  # no snapshot here: take one from GitHub (kept in .cache/ for the next run)
  repo="$here/.cache/smartsim.git"
  [ -d "$repo" ] || git clone -q --bare --depth 1 https://github.com/CrayLabs/SmartSim "$repo"
fi
py="$here/.venv/bin/python"
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "keeping $work" >&2 || trap 'rm -rf "$work"' EXIT
git -C "$repo" archive HEAD tests | tar -x -C "$work"
cp "$here/tests/compat/smartsim_conftest.py" "$work/conftest.py"
files=(run_settings batch_settings mpi_settings slurm_settings pbs_settings lsf_settings alps_settings
       pals_settings sge_batch_settings generator model ensemble entitylist dbnode orchestrator experiment
       local_launch local_multi_run local_restart smartredis multidb reconnect_orchestrator modelwriter
       colo_model_local output_files interrupt containers)
args=()
for f in "${files[@]}"; do args+=("tests/test_$f.py"); done
[ $# -gt 0 ] && args=("$@")
cd "$work"
SIMCTL_SMARTSIM=force "$py" -m pytest -p no:cacheprovider -q --tb=no --junitxml="$work/report.xml" \
  -o addopts= --continue-on-collection-errors "${args[@]}" >"$work/pytest.out" 2>&1 || true
tail -n 3 "$work/pytest.out"
"$py" - "$work/report.xml" <<'PY'
import collections, re, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
counts, causes = collections.Counter(), collections.defaultdict(list)
for case in root.iter("testcase"):
    bad = case.find("failure") if case.find("failure") is not None else case.find("error")
    skip = case.find("skipped")
    if bad is None and skip is None:
        counts["passed"] += 1
        continue
    if skip is not None and bad is None:
        counts["skipped"] += 1
        continue
    counts["failed"] += 1
    text = (bad.get("message") or "").strip()
    if text in ("", "collection failure"):  # the error itself is the last "E " line of the report
        lines = [ln[1:].strip() for ln in (bad.text or "").splitlines() if ln.startswith("E ")]
        text = ("collection: " + lines[-1]) if lines else (text or "?")
    msg = text.splitlines()[0]
    msg = re.sub(r"0x[0-9a-f]+|/tmp/\S+|\d{3,}", "…", msg)[:150]
    causes[msg].append(f"{case.get('classname')}.{case.get('name')}")
print(f"conformance: {counts['passed']} passed, {counts['failed']} failed/errored, {counts['skipped']} skipped")
for msg, tests in sorted(causes.items(), key=lambda kv: -len(kv[1])):
    print(f"{len(tests):4d}  {msg}")
PY
# SmartSim's doc examples, run unchanged (the file is not named test_*: it runs here, not in test.sh,
# since the snapshot it reads may be missing where the suite runs)
cd "$here"
SMARTSIM_REPO="$repo" "$py" -m pytest -p no:cacheprovider -q tests/compat/conformance_doc_examples.py
