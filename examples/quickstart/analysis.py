"""Reads every member's temperature profile back from the feature store and
prints one line per member: its diffusivity, steps, peak temperature, how
far the heat spread (the width of the region above 1 degree), and what the
network ``profile_net`` (run in the store, beside the data) says of the
profile: its total heat (100 degrees were put in; the cold ends take a
little once the heat reaches them) and its steepest slope."""

import os

import numpy as np

from simctl import Client

client = Client()
members = [m for m in os.environ.get("SSKEYIN", "").split(",") if m]
print(f"{'member':<10} {'alpha':>6} {'steps':>6} {'peak':>8} {'width':>6} {'heat':>8} {'slope':>7}")
for member in members:
    client.set_data_source(member)  # read the keys this member wrote
    u = client.get_tensor("temperature")
    alpha, steps = client.get_tensor("params")
    # run the network in the store on the member's tensor; the output is written under our own name
    client.run_model("profile_net", inputs="temperature", outputs="summary")
    client.set_data_source("analysis")
    _, heat, slope = client.get_tensor("summary")
    print(f"{member:<10} {alpha:>6} {int(steps):>6} {u.max():>8.3f} {int(np.sum(u > 1.0)):>6} {heat:>8.3f} "
          f"{slope:>7.3f}")
