#!/usr/bin/env bash
# Re-record the real Slurm outputs that tests/launchers/test_slurm_parsers.py reads, with
# EXACTLY the commands simctl's slurm launcher runs (src/simctl/plugins/launchers/slurm.py):
#
#   squeue -h -r -t all -j IDS -O "JobArrayID:|,State:|,Reason:|,exit_code:|"
#   sbatch --parsable SCRIPT
#
# Needs the test Slurm (scripts/setup-slurm.sh). Takes about two minutes (one job
# must reach its time limit). Writes squeue-O-*.txt, sbatch-*.txt, scancel-*.txt,
# sacct-*.txt, scontrol-*.txt next to this script; see README.md.
set -euo pipefail
cd "$(dirname "$0")"
F="JobArrayID:|,State:|,Reason:|,exit_code:|"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sub() { sbatch --parsable -o /dev/null -e /dev/null "$@"; }

ok=$(sub -J rec-ok --wrap true)
f3=$(sub -J rec-exit3 --wrap 'exit 3')
sig=$(sub -J rec-kill9 --wrap 'kill -9 $$')
arr=$(sub -J rec-array --array=0-2 --wrap 'exit $SLURM_ARRAY_TASK_ID')
to=$(sub -J rec-timeout --time=00:01:00 --wrap 'sleep 300')
canc=$(sub -J rec-cancel --wrap 'sleep 300')
run=$(sub -J rec-run --wrap 'sleep 240')
beg=$(sub -J rec-begin --begin=now+3600 --wrap true)
hold=$(sub -J rec-hold --hold --wrap true)
dep=$(sub -J rec-dep --dependency=afterok:$run --wrap true)
parr=$(sub -J rec-parray --array=0-3 --begin=now+3600 --wrap true)
never=$(sub -J rec-toobig -n 4096 --wrap true 2>/dev/null || true)
ids="$ok,$f3,$sig,$arr,$to,$canc,$run,$beg,$hold,$dep,$parr${never:+,$never}"
sleep 3
scancel "$canc"
sleep 2
squeue -h -r -t all -j "$ids" -O "$F" > squeue-O-states.txt
squeue -h -t all -j "$parr" -O "$F" > squeue-O-array-pending-no-r.txt
# the time limit: wait until the job leaves RUNNING (limit + up to ~30 s of slurmctld's check)
for _ in $(seq 180); do
    state=$(squeue -h -r -t all -j "$to" -O "$F")
    [[ $state == *RUNNING* ]] || break
    sleep 1
done
squeue -h -r -t all -j "$to,$run" -O "$F" > squeue-O-timeout.txt
scancel "$run" "$beg" "$hold" "$dep" "$parr" ${never:+"$never"}
sleep 1
squeue -h -r -t all -j "$run,$beg,$parr" -O "$F" > squeue-O-cancelled.txt

# a made-up id: one alone fails, several are an empty listing
{ squeue -h -r -t all -j 987654 -O "$F" 2>&1; echo "exit=$?"; } > squeue-O-unknown-one.txt || true
{ squeue -h -r -t all -j 987654,987655 -O "$F" 2>&1; echo "exit=$?"; } > squeue-O-unknown-many.txt || true

printf '#!/bin/bash\ntrue\n' > "$tmp/job.sh"
{ sbatch --parsable -o /dev/null "$tmp/job.sh" 2>&1; echo "exit=$?"; } > sbatch-parsable.txt
{ sbatch -o /dev/null "$tmp/job.sh" 2>&1; echo "exit=$?"; } > sbatch-plain.txt
{ sbatch --parsable --partition=nope "$tmp/job.sh" 2>&1; echo "exit=$?"; } > sbatch-bad-partition.txt || true
{ sbatch --parsable --time=abc "$tmp/job.sh" 2>&1; echo "exit=$?"; } > sbatch-bad-time.txt || true
{ scancel 987654 2>&1; echo "exit=$?"; } > scancel-unknown.txt || true
{ sacct -n -P -X -j "$ok" -o JobID,State,ExitCode 2>&1; echo "exit=$?"; } > sacct-disabled.txt || true
scontrol show config | grep '^AccountingStorageType' > scontrol-accounting.txt
echo "recorded with $(sinfo --version) on $(date -u +%Y-%m-%d)" > recorded-with.txt
