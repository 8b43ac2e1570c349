#!/usr/bin/env bash
# The quick start's main job: set up what the example uses (scripts/setup.sh: simctl
# and torch, no other ML runtime), then run the example
# experiment (an ensemble sweep on the local launcher) and show its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/quickstart/experiment.py "$@"
