#!/usr/bin/env bash
# Install the Debian packages libhongbao needs to build and test, if any are missing.
# Usage: .ci/deps.sh [extra-package...]   (root runs apt-get directly; others go through sudo)
set -euo pipefail
wanted=(cmake make gcc pkg-config libuv1-dev check libhttp-parser-dev clang libclang-rt-14-dev
        clang-format python3 chromium libjs-chart.js gnuplot-nox valgrind prometheus curl
        libhiredis-dev redis-server redis-tools iproute2 "$@")
missing=()
for p in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "deps: missing packages (${missing[*]}) and not root: install them and run again" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
