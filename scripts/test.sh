#!/usr/bin/env bash
# The quick start's test command: set everything up (including the real
# single-node Slurm cluster), lint (ruff) and type-check (mypy, configured in
# pyproject.toml), then run the whole test suite; any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --slurm
echo "+ ruff check src tests benchmarks" >&2
.venv/bin/ruff check src tests benchmarks
echo "+ mypy" >&2
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
