#!/usr/bin/env bash
# The quick start's test command: set everything up (the test, lint and docs
# tools, every ML backend's runtime, the real single-node Slurm cluster), lint
# (ruff), type-check (mypy, configured in pyproject.toml), build the
# documentation site with warnings as errors, run the core's unit tests on the
# oldest and newest Python supported (scripts/test-pythons.sh), the Slurm
# test set on the multi-node test cluster (scripts/test-slurm-multinode.sh),
# then the whole test suite (the Slurm set on the single-node cluster among
# it); any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev --slurm
echo "+ ruff check src tests benchmarks" >&2
.venv/bin/ruff check src tests benchmarks
echo "+ mypy" >&2
.venv/bin/mypy
echo "+ mkdocs build --strict" >&2
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet
echo "+ scripts/test-pythons.sh" >&2
bash scripts/test-pythons.sh
bash scripts/test-slurm-multinode.sh -q
exec .venv/bin/python -m pytest "$@"
