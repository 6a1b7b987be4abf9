#!/usr/bin/env bash
# Memory an idle logged-in connection costs hb-server: its RSS and the kernel's slab memory
# (both ends of a loopback TCP connection) before and after N connections.
# Usage: bench/idle_memory.sh [N] [BUILD_DIR]     (default 19000, _build/gcc)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-19000}
build=${2:-$root/_build/gcc}
server="$build/examples/hb-server"
[ -x "$server" ] || { echo "build hb-server first (tests/run.sh --quick)" >&2; exit 1; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }

out=$(mktemp)
"$server" --listen 127.0.0.1:0 --control off --threads 2 >"$out" 2>&1 &
spid=$!
cleanup() { kill "$spid" 2>/dev/null || true; [ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null || true; rm -f "$out" "${fifo:-}"; }
trap cleanup EXIT
for _ in $(seq 50); do grep -q listening "$out" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\) .*/\1/p' "$out")
sleep 0.5
rss0=$(rss_kb "$spid"); slab0=$(slab_kb)

fifo=$(mktemp -u); mkfifo "$fifo"
python3 "$root/bench/idle_conns.py" --port "$port" --count "$n" <"$fifo" >"$fifo.out" &
cpid=$!
exec 3>"$fifo"
for _ in $(seq 1200); do grep -q ready "$fifo.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$fifo.out" || { echo "connections did not come up" >&2; exit 1; }
sleep 1
rss1=$(rss_kb "$spid"); slab1=$(slab_kb)
exec 3>&-
wait "$cpid" || true
rm -f "$fifo.out"
kill -TERM "$spid"; wait "$spid" || true

awk -v n="$n" -v r0="$rss0" -v r1="$rss1" -v s0="$slab0" -v s1="$slab1" 'BEGIN {
    printf "connections: %d\n", n
    printf "hb-server RSS: %d kB -> %d kB: %.2f kB per connection\n", r0, r1, (r1 - r0) / n
    printf "kernel slab:   %d kB -> %d kB: %.2f kB per connection (both ends, loopback)\n", s0, s1, (s1 - s0) / n
}'
