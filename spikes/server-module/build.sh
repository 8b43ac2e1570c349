#!/bin/sh
# Builds the spike module with gcc alone (no libc headers: -nostdlib; memcmp etc. resolve in the server at load).
set -e
cd "$(dirname "$0")"
gcc -O2 -Wall -Wextra -fPIC -shared -nostdlib -o simctl_module.so simctl_module.c
echo "built $(pwd)/simctl_module.so"
