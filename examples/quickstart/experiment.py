"""The quick start: a parameter sweep of a small simulation, run locally.

Six members (3 diffusivities x 2 step counts, all permutations): simctl writes
each member's directory with its own ``heat.in``, passes ``--steps`` on the
command line, runs them as local processes, and prints the summary.
"""

import json
import os
import sys

from simctl import Experiment
from simctl.log import get_logger

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
logger = get_logger("quickstart")

exp = Experiment("quickstart", exp_path=os.path.join(root, "experiments", "quickstart"), launcher="local")
rs = exp.create_run_settings(exe=sys.executable, exe_args=[os.path.join(here, "heat.py")])
sweep = exp.create_ensemble("sweep", params={"alpha": [0.1, 0.2, 0.4], "steps": [50, 200]},
                            params_as_args=["steps"], run_settings=rs, perm_strategy="all_perm")
sweep.attach_generator_files(to_configure=[os.path.join(here, "heat.in")])

exp.generate(sweep, overwrite=True)
exp.start(sweep, block=True, summary=True)

print(exp.summary())
print()
print(f"{'member':<10} {'alpha':>6} {'steps':>6} {'peak':>8}")
for member in sweep:
    result = json.load(open(os.path.join(member.path, "result.json")))
    print(f"{member.name:<10} {result['alpha']:>6} {result['steps']:>6} {result['peak']:>8.3f}")
failed = [s for s in exp.get_status(sweep) if s.name != "COMPLETED"]
sys.exit(1 if failed else 0)
