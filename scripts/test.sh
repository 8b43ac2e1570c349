#!/usr/bin/env bash
# The quick start's test command: set everything up (including the real
# single-node Slurm cluster) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --slurm
exec .venv/bin/python -m pytest "$@"
