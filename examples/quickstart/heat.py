"""A tiny 1-D heat-diffusion "simulation" for the quick start.

Reads its diffusivity from ``heat.in`` (written by simctl from a tagged
template) and the number of steps from ``--steps``; prints the final peak
temperature and writes it to ``result.json``.
"""

import argparse
import json

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, required=True)
args = parser.parse_args()

config = dict(line.split("=", 1) for line in open("heat.in").read().splitlines() if "=" in line)
alpha = float(config["alpha"])

u = np.zeros(101)
u[50] = 100.0  # a hot spot in the middle of a cold rod
for _ in range(args.steps):
    u[1:-1] += alpha * (u[2:] - 2 * u[1:-1] + u[:-2])

peak = float(u.max())
print(f"alpha={alpha} steps={args.steps} peak={peak:.3f}", flush=True)
json.dump({"alpha": alpha, "steps": args.steps, "peak": peak}, open("result.json", "w"))
