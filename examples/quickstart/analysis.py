"""Reads every member's temperature profile back from the feature store and
prints one line per member: its diffusivity, steps, peak temperature and how
far the heat spread (the width of the region above 1 degree)."""

import os

import numpy as np

from simctl import Client

client = Client()
members = [m for m in os.environ.get("SSKEYIN", "").split(",") if m]
print(f"{'member':<10} {'alpha':>6} {'steps':>6} {'peak':>8} {'width':>6}")
for member in members:
    client.set_data_source(member)  # read the keys this member wrote
    u = client.get_tensor("temperature")
    alpha, steps = client.get_tensor("params")
    print(f"{member:<10} {alpha:>6} {int(steps):>6} {u.max():>8.3f} {int(np.sum(u > 1.0)):>6}")
