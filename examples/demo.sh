#!/usr/bin/env bash
# The main job: installs what it needs, builds libhongbao and its example programs, and runs them.
# For now the example programs only describe themselves (--help); the end-to-end demo (monitor,
# server and client together on loopback) comes with the runtime.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/.ci/deps.sh"
build="$root/_build/demo"
mkdir -p "$root/_build"
cmake -S "$root" -B "$build" -DHONGBAO_BUILD_TESTS=OFF >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
for prog in hb-server hb-client hb-monitor; do
    printf '\n$ %s --help\n' "$prog"
    "$build/examples/$prog" --help
done
