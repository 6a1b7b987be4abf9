#!/usr/bin/env bash
# Profile hb-server (or the bare responder) under the scheduled load of bench/run's 'schedule'
# scenario, with perf (call graphs) or, when perf cannot sample, valgrind --tool=callgrind.
# Usage: bench/profile.sh [hb|bare] [QPS] [USERS] [SECONDS]     (default hb 19000 19000 10)
# Needs the Release build of bench/run (_build/bench). Prints the top of the report; the raw
# data stays in bench/results/profile-*.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:-hb}
qps=${2:-19000}
users=${3:-19000}
secs=${4:-10}
build=$root/_build/bench
out=$root/bench/results
mkdir -p "$out"
stamp=$(date +%Y%m%d-%H%M%S)
log=$(mktemp)
ledger=$(mktemp -d) # hb-server's claim journal (on, default settings, as in bench/run)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$log" "$log.c" "$ledger"
}
trap cleanup EXIT

if [ "$kind" = hb ]; then
    "$build/examples/hb-server" --listen 127.0.0.1:0 --control 127.0.0.1:0 --max-qps 16000000 \
        --max-conn-qps 0 --seed 1 --ledger "$ledger/journal" >"$log" 2>&1 &
else
    "$build/bare_responder" --listen 127.0.0.1:0 >"$log" 2>&1 &
fi
spid=$!
pids+=("$spid")
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\) .*/\1/p' "$log")
ctl=$(sed -n 's|.*control endpoint on http://[0-9.]*:\([0-9]*\)/.*|\1|p' "$log")
"$build/examples/hb-client" --server "127.0.0.1:$port" --min 0 --max $((users - 1)) --qps "$qps" \
    --duration $((secs + 40)) --control off --source 127.0.0.2-127.0.0.9 >"$log.c" 2>&1 &
pids+=("$!")
for _ in $(seq 600); do grep -q "$users/$users connected" "$log.c" && break; sleep 0.1; done
if [ "$kind" = hb ] && [ -n "$ctl" ]; then
    curl -s "http://127.0.0.1:$ctl/yaohongbao?qps=200&sum=$((200 * secs))" >/dev/null
    curl -s "http://127.0.0.1:$ctl/fahongbao?qps=200&sum=$((200 * secs))&min=0&max=$((users - 1))" >/dev/null
fi
sleep 1
data=$out/profile-$kind-$qps-$stamp
if perf record -F 999 -g -p "$spid" -o "$data.perf" -- sleep "$secs" >/dev/null 2>&1; then
    perf report -i "$data.perf" --stdio --no-children --percent-limit 1.5 --sort symbol 2>/dev/null |
        grep -v '^$' | head -60 | tee "$data.txt"
else
    echo "perf cannot sample here; use valgrind --tool=callgrind on a server started by hand" >&2
    exit 1
fi
