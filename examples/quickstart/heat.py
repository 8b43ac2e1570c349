"""A tiny 1-D heat-diffusion "simulation" for the quick start.

Reads its diffusivity from ``heat.in`` (written by simctl from a tagged
template) and the number of steps from ``--steps``; prints the final peak
temperature, and stores the final temperature profile in the experiment's
feature store as the tensor ``temperature`` (under this member's name: the
ensemble prefixes its members' keys).
"""

import argparse

import numpy as np

from simctl import Client

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, required=True)
args = parser.parse_args()

config = dict(line.split("=", 1) for line in open("heat.in").read().splitlines() if "=" in line)
alpha = float(config["alpha"])

u = np.zeros(101)
u[50] = 100.0  # a hot spot in the middle of a cold rod
for _ in range(args.steps):
    u[1:-1] += alpha * (u[2:] - 2 * u[1:-1] + u[:-2])

print(f"alpha={alpha} steps={args.steps} peak={u.max():.3f}", flush=True)
client = Client()  # the store simctl started: its address and password are in this process's environment
client.put_tensor("temperature", u)
client.put_tensor("params", np.array([alpha, args.steps]))
