#!/usr/bin/env bash
# The main job: the seed's experiment on loopback, end to end. Installs what it needs, builds
# libhongbao and its example programs, then runs a monitor, a server and a fleet of simulated
# users together, and ends with a summary table. Nothing is left running.
#
# Usage: examples/demo.sh [--users N] [--qps Q] [--duration S] [--envelopes E] [--sends F]
#   defaults: 10,000 users shaking 5,000 times a second for 30 s, 200 shake envelopes and
#   20 send-envelopes a second. Set HB_DEMO_OUT=DIR to keep the outputs (CSV, plots, logs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
users=10000 qps=5000 duration=30 envelopes=200 sends=20
while [ $# -gt 0 ]; do
    case "$1" in
    --users) users=$2; shift 2 ;;
    --qps) qps=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --envelopes) envelopes=$2; shift 2 ;;
    --sends) sends=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$duration" -lt 10 ]; then
    echo "demo.sh: --duration must be at least 10 s" >&2
    exit 2
fi

"$root/.ci/deps.sh"
build="$root/_build/demo"
mkdir -p "$root/_build"
cmake -S "$root" -B "$build" -DHONGBAO_BUILD_TESTS=OFF >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
bin="$build/examples"
out=${HB_DEMO_OUT:-$(mktemp -d)}
mkdir -p "$out"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# A free loopback port: ask the kernel for one through a bound-and-released socket.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)); }
# GET over bash's /dev/tcp (no curl needed); prints the body.
http_get() {
    local port=$1 path=$2
    exec 9<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&9
    sed '1,/^\r$/d' <&9
    exec 9<&-
}
wait_for() { # file pattern
    for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "demo.sh: '$2' did not appear in $1" >&2; cat "$1" >&2; return 1
}

mon_port=$(free_port) dash_port=$(free_port) srv_port=$(free_port) ctl_port=$(free_port)
"$bin/hb-monitor" --listen "127.0.0.1:$mon_port" --http "127.0.0.1:$dash_port" \
    --csv "$out/monitor.csv" --plot "$out/plots" --duration $((duration + 8)) \
    >"$out/monitor.log" 2>&1 &
pids+=($!)
mon_pid=$!
"$bin/hb-server" --listen "127.0.0.1:$srv_port" --control "127.0.0.1:$ctl_port" \
    --monitor "127.0.0.1:$mon_port" --ledger "$out/ledger" >"$out/server.log" 2>&1 &
pids+=($!)
srv_pid=$!
wait_for "$out/server.log" "control endpoint"
wait_for "$out/monitor.log" "http://"

echo "dashboard: http://127.0.0.1:$dash_port/   (outputs in $out)"
echo "running $users users at $qps shakes/s for ${duration}s, $envelopes shake envelopes/s, $sends send-envelopes/s"
# Envelope generation ends 5 s before the users stop, so every envelope is handed out.
gen_s=$((duration - 5))
http_get "$ctl_port" "/yaohongbao?qps=$envelopes&sum=$((envelopes * gen_s))" >/dev/null
http_get "$ctl_port" "/fahongbao?qps=$sends&sum=$((sends * gen_s))&min=0&max=$((users - 1))" >/dev/null

"$bin/hb-client" --server "127.0.0.1:$srv_port" --min 0 --max $((users - 1)) --total "$users" \
    --qps "$qps" --duration "$duration" --control 0 --monitor "127.0.0.1:$mon_port" \
    --report-interval 10 >"$out/client.log" 2>"$out/client.err"
stats=$(http_get "$ctl_port" /stats)
kill -TERM "$srv_pid"
wait "$srv_pid" || { echo "demo.sh: hb-server did not stop cleanly" >&2; exit 1; }
wait "$mon_pid" || { echo "demo.sh: hb-monitor did not stop cleanly" >&2; exit 1; }
pids=()

# Pull figures out of the client's summary line and the server's /stats.
csum=$(grep '^summary:' "$out/client.log")
c() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" $csum"; }
s() { grep -o "\"$1\":[0-9]*" <<<"$stats" | tail -n 1 | cut -d: -f2; }
scum() { grep -o "\"cumulative\":{.*" <<<"$stats" | grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2; }
shakes=$(c shakes)
srv_requests=$(scum requests)
awk -v d="$duration" -v users="$users" -v target="$qps" \
    -v conn="$(c connected)" -v shakes="$shakes" -v srvreq="$srv_requests" \
    -v created="$(scum shake_envelopes)" -v handed="$(scum shake_handed_out)" \
    -v received="$(c envelopes)" -v issued="$(scum shake_amount_issued)" -v amount="$(c amount)" \
    -v screated="$(scum send_created)" -v sissued="$(scum send_amount_issued)" \
    -v granted="$(c granted)" -v claimed="$(c claimed)" -v sclaimed="$(scum send_amount_claimed)" \
    -v offline="$(grep -o '"notice_offline":\[[0-9]*,[0-9]*' <<<"$stats" | cut -d, -f2)" \
    -v p50="$(c p50_us)" -v p99="$(c p99_us)" -v p999="$(c p999_us)" -v mx="$(c max_us)" 'BEGIN {
    printf "\n%-48s %s\n", "figure", "value"
    printf "%-48s %d of %d\n", "users connected", conn, users
    printf "%-48s %.0f /s (target %d)\n", "client shakes sent", shakes / d, target
    printf "%-48s %.0f /s\n", "server requests (shakes and claims)", srvreq / d
    printf "%-48s %d / %d / %d\n", "shake envelopes created / handed out / received", created, handed, received
    printf "%-48s %d = %d %s\n", "shake amount issued = received (cents)", issued, amount, (issued == amount ? "(balanced)" : "(NOT balanced)")
    printf "%-48s %d, %d cents\n", "send-envelopes created, amount", screated, sissued
    printf "%-48s %d (%d shares not notified: recipient offline)\n", "notices sent", 3 * screated - offline, offline
    printf "%-48s %d, %d cents (server: %d)\n", "claims granted, amount", granted, claimed, sclaimed
    printf "%-48s p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", "shake latency (ms, from intended send)", p50/1000, p99/1000, p999/1000, mx/1000
}'
echo
if "$bin/hb-audit" "$out/ledger" >"$out/audit.log" 2>&1; then
    echo "claim journal audit: the books balance ($(grep -m1 -i 'claims' "$out/audit.log" | tr -s ' '))"
else
    echo "claim journal audit FAILED:"; cat "$out/audit.log"; exit 1
fi
echo "monitor: $(grep -c . "$out/monitor.csv" 2>/dev/null || echo 0) CSV rows in $out/monitor.csv; plots in $out/plots"
