#!/usr/bin/env bash
# The oldest and the newest Python simctl supports, beside .venv's: a venv per
# interpreter (.venv-py3.10, .venv-py3.13) with simctl (editable) and its test
# extras, and the core's unit tests (tests/core -m "not slow") run in each.
# Idempotent and quick when run again: a venv is reused while pyproject.toml is
# unchanged. scripts/test.sh runs it before the suite.
#   scripts/test-pythons.sh                  # 3.10 and 3.13
#   SIMCTL_TEST_PYTHONS="3.11 3.12" scripts/test-pythons.sh
# An interpreter is found as pythonX.Y on PATH or under pyenv's root
# (~/.pyenv/versions/X.Y.*); one that is missing fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[pythons]\033[0m %s\n' "$*" >&2; }

find_python() {  # pythonX.Y on PATH, else the newest pyenv X.Y.*
  local v=$1 p
  if p=$(command -v "python$v" 2>/dev/null) && "$p" -c 'import venv' 2>/dev/null; then echo "$p"; return; fi
  for p in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$v".* 2>/dev/null | sort -V -r); do
    [ -x "$p/bin/python" ] && { echo "$p/bin/python"; return; }
  done
  return 1
}

want=$(sha256sum pyproject.toml | cut -c1-16)
status=0
for v in ${SIMCTL_TEST_PYTHONS:-3.10 3.13}; do
  py=$(find_python "$v") || { echo "Python $v not found (pythonX.Y on PATH or pyenv); install it" >&2; exit 1; }
  venv=.venv-py$v
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv from $py"
    "$py" -m venv "$venv"
  fi
  stamp=$venv/.simctl-installed
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$venv/bin/python" -c 'import simctl, pytest' 2>/dev/null; then
    say "installing simctl (editable, with its test extras) into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -e ".[test]"
    echo "$want" > "$stamp"
  fi
  say "Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'): tests/core -m 'not slow'"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow" tests/core || status=1
done
exit $status
