#!/usr/bin/env bash
# The Slurm test set (issue 18) on the multi-node test cluster: brings it up
# (scripts/setup-multinode.sh --start, idempotent) and runs the tests marked
# `slurm` of the files below with pytest ON ITS HEAD NODE, as a driver on a
# login node, with SIMCTL_TEST_SLURM=multinode (tests/cmd_recorder/slurm_helpers.py:
# TARGET, the partition, nodes, interface and addresses the tests use) and a
# basetemp on the cluster's shared directory (every node has its own /tmp).
# Tests marked `single_node_slurm` (their subject is the single-node test
# Slurm itself) are left out. The same files run on the single-node cluster in
# the main pytest run. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=(tests/launchers/test_slurm.py tests/launchers/test_slurm_fit.py tests/launchers/test_slurm_shared_nodes.py
       tests/launchers/test_slurm_site.py tests/launchers/test_launch_plan_slurm.py
       tests/launchers/test_scheduler_commands.py tests/store/test_store_slurm.py)
bash scripts/setup-multinode.sh --start
while IFS='=' read -r key value; do export "$key=${value//\"/}"; done < <(bash scripts/setup-multinode.sh --env)
export SIMCTL_TEST_SLURM=multinode
echo "+ the Slurm tests on the multi-node test cluster (pytest on $SIMCTL_MN_HEAD)" >&2
exec bash scripts/setup-multinode.sh --exec "$SIMCTL_MN_HEAD" -- .venv/bin/python -m pytest \
    -m "slurm and not single_node_slurm" --basetemp="$SIMCTL_MN_DIR/shared/pytest-slurm-$(basename "$PWD")" \
    "${FILES[@]}" "$@"
