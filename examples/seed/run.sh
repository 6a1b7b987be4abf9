#!/usr/bin/env bash
# The seed's experiment in its three phases, small, with the built tools: every user connects,
# then the fleet shakes at one rate, then at a second, each rate set through hb-client's HTTP
# control endpoint with curl, while hb-server hands out shake envelopes and send-envelopes all
# along and hb-monitor writes every second to CSV. At the end: the seed's figure (gnuplot) and a
# table per phase. Loopback only; every process is started here, bounded in time, and stopped by
# its PID when the script ends, however it ends.
#
# Usage: examples/seed/run.sh [--users N] [--rates R1,R2] [--phase S] [--envelopes E]
#                             [--sends F] [--bin DIR] [--out DIR]
#   defaults: 10,000 users (at most 19,000: one server process), 1,000 then 2,000 shakes/s,
#   10 s a phase, 200 shake envelopes and 20 send-envelopes a second. --bin: the directory of
#   hb-server, hb-client and hb-monitor (default: the first of _build/demo/examples,
#   _build/dev/examples, _build/bench/examples that has them, else $PATH; examples/demo.sh builds
#   _build/demo). --out: where the CSV, figure, table and logs go (default: a new temporary
#   directory). The full size (1,000,000 users, 30,000 then 60,000/s) is `bench/run seed`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
users=10000 rates=1000,2000 phase=10 envelopes=200 sends=20 bin="" out=""
die() { echo "seed: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --users) users=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --phase) phase=$2; shift 2 ;;
    --envelopes) envelopes=$2; shift 2 ;;
    --sends) sends=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
r1=${rates%%,*} r2=${rates#*,}
for v in "$users" "$r1" "$r2" "$phase" "$envelopes" "$sends"; do
    case "$v" in ''|*[!0-9]*) die "'$v' is not a whole number (see --help)" ;; esac
done
[ "$users" -ge 3 ] && [ "$users" -le 19000 ] || die "--users must be 3..19000 (one server process; bench/run seed runs more)"
[ "$phase" -ge 3 ] || die "--phase must be at least 3 s"

if [ -z "$bin" ]; then
    for d in "$root/_build/demo/examples" "$root/_build/dev/examples" "$root/_build/bench/examples"; do
        [ -x "$d/hb-server" ] && [ -x "$d/hb-client" ] && [ -x "$d/hb-monitor" ] && { bin=$d; break; }
    done
fi
if [ -n "$bin" ]; then
    server="$bin/hb-server" client="$bin/hb-client" monitor="$bin/hb-monitor"
else
    server=$(command -v hb-server || true) client=$(command -v hb-client || true)
    monitor=$(command -v hb-monitor || true)
fi
for t in "$server" "$client" "$monitor"; do
    [ -n "$t" ] && [ -x "$t" ] || die "hb-server, hb-client and hb-monitor not found: build them (examples/demo.sh) or give --bin DIR"
done
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
out=${out:-$(mktemp -d)}
mkdir -p "$out"
rm -f "$out/pids" "$out/monitor.csv" "$out/seed.png"

# Every bound: the connect deadline, the phases, the monitor's lag, and room to stop.
connect_limit=60
limit=$((connect_limit + 3 * phase + 40))

. "$here/../common/procs.sh"
trap stop_all EXIT
trap 'echo "seed: interrupted" >&2; exit 130' INT
trap 'echo "seed: terminated" >&2; exit 143' TERM

fail() {
    echo "seed: $*" >&2
    local n
    for n in monitor server client; do
        [ -s "$out/$n.log" ] && { echo "--- $out/$n.log (last lines)" >&2; tail -5 "$out/$n.log" >&2; }
    done
    exit 1
}

get() { curl -sf --max-time 5 "http://127.0.0.1:$1$2"; }
# json_field JSON NAME: the first number called NAME in JSON.
json_field() { grep -o "\"$2\":[0-9]*" <<<"$1" | head -1 | cut -d: -f2; }

launch monitor "$monitor" --listen 127.0.0.1:0 --http 127.0.0.1:0 --csv "$out/monitor.csv" \
    --duration "$limit"
wait_for 10 "hb-monitor start" printed monitor "dashboard on"
mon_port=$(port_in monitor 's/^hb-monitor: reports on 127\.0\.0\.1:\([0-9]*\)$/\1/p')
dash_port=$(port_in monitor 's#^hb-monitor: dashboard on http://127\.0\.0\.1:\([0-9]*\)/.*#\1#p')

launch server timeout -s TERM "$limit" "$server" --listen 127.0.0.1:0 --control 127.0.0.1:0 \
    --monitor "127.0.0.1:$mon_port" --ledger "$out/ledger"
wait_for 10 "hb-server start" printed server "control endpoint on"
srv_port=$(port_in server 's/^hb-server: listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p')
ctl_port=$(port_in server 's#^hb-server: control endpoint on http://127\.0\.0\.1:\([0-9]*\)/.*#\1#p')

echo "seed: dashboard on http://127.0.0.1:$dash_port/ ; outputs in $out"
echo "seed: $users users; connect, then $r1/s, then $r2/s, $phase s each;" \
     "$envelopes shake envelopes/s and $sends send-envelopes/s throughout"
# Envelopes all along: as many as the longest run could use.
get "$ctl_port" "/yaohongbao?qps=$envelopes&sum=$((envelopes * limit))" >/dev/null ||
    fail "hb-server refused /yaohongbao"
get "$ctl_port" "/fahongbao?qps=$sends&sum=$((sends * limit))&min=0&max=$((users - 1))" >/dev/null ||
    fail "hb-server refused /fahongbao"

# Phase 1, connect: the users connect at rate 0 (nothing scheduled while they connect).
t0=$(date +%s)
launch client "$client" --server "127.0.0.1:$srv_port" --min 0 --max $((users - 1)) \
    --total "$users" --qps 0 --control 127.0.0.1:0 --monitor "127.0.0.1:$mon_port" \
    --duration "$limit" --report-interval 3600 --source 127.0.0.2-127.0.0.9
wait_for 10 "hb-client start" printed client "control endpoint on"
cli_port=$(port_in client 's#^hb-client: control endpoint on http://127\.0\.0\.1:\([0-9]*\)/.*#\1#p')
all_connected() {
    local st
    st=$(get "$cli_port" /stats) || return 1
    [ "$(json_field "$st" connected)" = "$users" ]
}
wait_for "$connect_limit" "$users users connected" all_connected
echo "seed: phase 1, connect: $users users in $(($(date +%s) - t0 + 1)) s"

# set_rate R: the fleet's rate from the next whole second; prints that second.
set_rate() {
    local before
    before=$(date +%s)
    get "$cli_port" "/qps?qps=$1" >/dev/null || fail "hb-client refused /qps?qps=$1"
    echo $((before + 1))
}

# run_phase N R START: phase N at R shakes/s from second START for $phase s. The latency
# histograms are reset one second in; returns early in the phase's last second, for the next
# rate to be set from the next whole second.
run_phase() {
    local n=$1 r=$2 start=$3
    echo "seed: phase $n, $r shakes/s from $(date -d "@$start" +%T)"
    wait_until $(((start + 1) * 1000 + 100))
    get "$cli_port" /reset-latency >/dev/null || fail "hb-client refused /reset-latency"
    wait_until $(((start + phase - 1) * 1000 + 200))
}

# read_latency N: the client's p50 and p99 (us, from each shake's intended send time) since the
# reset of phase N.
declare -A p50 p99
read_latency() {
    local st
    st=$(get "$cli_port" /stats) || fail "hb-client refused /stats"
    p50[$1]=$(json_field "$st" p50) && p99[$1]=$(json_field "$st" p99) ||
        fail "no latency in hb-client's /stats: $st"
}

t1=$(set_rate "$r1")
run_phase 2 "$r1" "$t1"
t2=$(set_rate "$r2")
read_latency 2 # still phase 2: the new rate applies from t2
run_phase 3 "$r2" "$t2"
t3=$((t2 + phase))
wait_until $((t3 * 1000 - 500))
read_latency 3
wait_until $((t3 * 1000))

# The monitor outputs a second once every process has reported it (about 3 s later).
csv_has() { # the CSV has the second $1 (or a later one) of type $2
    awk -F, -v s="$1" -v t="$2" '$2 == t && $1 >= s { ok = 1 } END { exit !ok }' "$out/monitor.csv"
}
csv_done() { csv_has $((t3 - 1)) server && csv_has $((t3 - 1)) client; }
wait_for 20 "second $((t3 - 1)) of both types in the monitor's CSV" csv_done

# Stop by PID, the client first (its final counters), then the server and the monitor.
for n in client server monitor; do stop "$n"; done

awk -F, -v mode=series -v t0="$t0" -v end="$t3" -f "$here/seed.awk" "$out/monitor.csv" >"$out/seed.dat"
awk -F, -v mode=phases -v phases="connect:$t0:$t0:$t1 rate1:$t1:$((t1 + 1)):$t2 rate2:$t2:$((t2 + 1)):$t3" \
    -f "$here/seed.awk" "$out/monitor.csv" >"$out/phases.txt"
if command -v gnuplot >/dev/null; then
    gnuplot -e "dat='$out/seed.dat'; png='$out/seed.png'; t1=$((t1 - t0)); t2=$((t2 - t0));
                t3=$((t3 - t0)); r1=$r1; r2=$r2; users=$users;
                what='$users users, examples/seed/run.sh'" "$here/seed.gp" ||
        fail "gnuplot failed on $here/seed.gp"
    figure="$out/seed.png"
else
    figure="none: gnuplot is not installed (apt-get install gnuplot-nox)"
fi

# The table: one row per phase, from the monitor's CSV and the client's latency.
# Connect: target and achieved are users connected; a rate phase's are shakes/s sent by the client
# (the server's figure beside it), over the phase's seconds after the first. Latency (ms) is from
# each shake's intended send time; envelopes, send-envelopes and claims are the phase's sums.
{
    printf '%-8s %12s %12s %12s %8s %8s %13s %6s %7s %15s\n' phase target achieved \
        "server shk/s" "p50 ms" "p99 ms" "env gen/out" sends claims "packets/s rx/tx"
    read -r _header
    n=1
    while read -r name _start _end _secs cshk sshk _srps rx tx _opened gen handed sent claims conn; do
        if [ "$n" -eq 1 ]; then
            target="$users users" achieved="$conn users" lat50=- lat99=-
        else
            target=$([ "$n" -eq 2 ] && echo "$r1/s" || echo "$r2/s") achieved="$cshk/s"
            lat50=$(awk -v v="${p50[$n]}" 'BEGIN { printf "%.2f", v / 1000 }')
            lat99=$(awk -v v="${p99[$n]}" 'BEGIN { printf "%.2f", v / 1000 }')
        fi
        printf '%-8s %12s %12s %12s %8s %8s %13s %6s %7s %15s\n' "$name" "$target" "$achieved" \
            "$sshk" "$lat50" "$lat99" "$gen/$handed" "$sent" "$claims" "$rx/$tx"
        n=$((n + 1))
    done
} <"$out/phases.txt" | tee "$out/table.txt"
echo "seed: figure $figure"
echo "seed: the monitor's CSV $out/monitor.csv; per second $out/seed.dat; per phase $out/phases.txt"
