"""The quick start: a parameter sweep of a small simulation that shares its
results through a feature store, run locally.

simctl starts a store (a redis-server bound to loopback, with a generated
password), writes six members' directories (3 diffusivities x 2 step
counts) with their own ``heat.in``, runs them as local processes (each
stores its temperature profile in the store), then runs an analysis model
that reads every member's profile back and has a small network
(``profile_net.py``, stored in the store before the analysis starts) run on
each profile beside the data, prints the summary, and stops the store.
"""

import os
import sys

from profile_net import ProfileNet

from simctl import Experiment
from simctl.log import get_logger
from simctl.ml.torch import serialize_model

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
logger = get_logger("quickstart")


# where the run directories go: the first argument, else <repository>/experiments/quickstart
exp_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "experiments", "quickstart")
exp = Experiment("quickstart", exp_path=exp_path, launcher="local")
db = exp.create_database(interface="lo")  # on a free port
rs = exp.create_run_settings(exe=sys.executable, exe_args=[os.path.join(here, "heat.py")])
sweep = exp.create_ensemble("sweep", params={"alpha": [0.1, 0.2, 0.4], "steps": [50, 200]},
                            params_as_args=["steps"], run_settings=rs, perm_strategy="all_perm")
sweep.attach_generator_files(to_configure=[os.path.join(here, "heat.in")])
sweep.enable_key_prefixing()  # each member's keys are stored under its own name

analysis = exp.create_model("analysis", exp.create_run_settings(exe=sys.executable,
                                                                 exe_args=[os.path.join(here, "analysis.py")]))
analysis.enable_key_prefixing()  # what the analysis writes (the network's outputs) is stored under its name
for member in sweep:
    analysis.register_incoming_entity(member)
# the network the analysis runs in the store: stored there before the analysis starts
analysis.add_ml_model("profile_net", "TORCH", model=serialize_model(ProfileNet()))

exp.generate(db, sweep, analysis, overwrite=True)
try:
    exp.start(db)  # returns once the store answers
    logger.info("feature store ready at %s", ", ".join(db.get_address()))
    exp.start(sweep, block=True, summary=True)
    exp.start(analysis, block=True)
finally:
    exp.stop(db)

print(exp.summary())
print()
print(open(os.path.join(analysis.path, "analysis.out")).read(), end="")
failed = [s for s in exp.get_status(sweep, analysis) if s.name != "COMPLETED"]
sys.exit(1 if failed else 0)
