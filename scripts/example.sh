#!/usr/bin/env bash
# The quick start's main job: set everything up, then run the example
# experiment (an ensemble sweep on the local launcher) and show its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/quickstart/experiment.py "$@"
