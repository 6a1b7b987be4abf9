#!/usr/bin/env bash
# A fleet on one machine, in one command (docs/fleet.md): a throwaway Redis Cluster (3 masters,
# 3 replicas, examples/fleet/cluster.sh), hb-monitor, three hb-server instances on their own
# loopback addresses 127.0.0.11..13 ("hosts") sharing the cluster (i1 and i2 electing the one
# generator that makes shake envelopes into the fleet's one budget, i1 making send-envelopes to
# users of every instance), and hb-client spreading its users over the three with --servers.
# After the run the client stops, the instances stop cleanly (SIGTERM: they give back what they
# drew), hb-audit --redis judges the fleet's books, and a table shows each instance's share.
# Loopback only; every process is started here, bounded in time, and stopped by its PID when the
# script ends, however it ends.
#
# Usage: examples/fleet/run.sh [--users N] [--qps Q] [--envelopes E] [--sends F] [--duration S]
#                              [--kill-one] [--lease MS] [--redis-port BASE] [--port P]
#                              [--dashboard P] [--redis-server PATH] [--bin DIR] [--out DIR]
#   defaults: 3,000 users shaking 400 times a second in all for 30 s; 500 shake envelopes and
#   20 send-envelopes a second (more envelopes than shakes: every instance holds some all
#   along, which is what a SIGKILL makes expire). --kill-one: SIGKILL i3 halfway (its users
#   fail over, its lease expires). --lease: the instances' --redis-lease (default 5000 ms).
#   --redis-port: the cluster's first port (default 16390: nodes on BASE..BASE+5, buses
#   BASE+10000..). --port: the instances' user port (default 0: any free); --dashboard:
#   hb-monitor's (default 0: any free). --redis-server: the redis-server to run. --bin: the
#   directory of hb-server, hb-client, hb-monitor and hb-audit (default: the first of
#   _build/demo/examples, _build/dev/examples that has them, else $PATH). --out: logs, CSVs,
#   the audit, the table and the cluster's files (default: a new temporary directory).
# Exit status: 0 the run went through and the books balance; 1 something failed (named), or the
# audit found violations; 2 a usage error; 3 something needed is missing (redis-server,
# redis-cli, curl, the tools, or hiredis support in hb-server).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
users=3000 qps=400 envelopes=500 sends=20 duration=30 kill_one=0 lease=5000
redis_port=16390 port=0 dashboard=0 redis_server=redis-server bin="" out=""
die() { echo "fleet: $*" >&2; exit 2; }
missing() { echo "fleet: $*" >&2; exit 3; }
while [ $# -gt 0 ]; do
    case "$1" in
    --users) users=$2; shift 2 ;;
    --qps) qps=$2; shift 2 ;;
    --envelopes) envelopes=$2; shift 2 ;;
    --sends) sends=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --kill-one) kill_one=1; shift ;;
    --lease) lease=$2; shift 2 ;;
    --redis-port) redis_port=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --dashboard) dashboard=$2; shift 2 ;;
    --redis-server) redis_server=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
for v in "$users" "$qps" "$envelopes" "$sends" "$duration" "$lease" "$redis_port" "$port" "$dashboard"; do
    case "$v" in ''|*[!0-9]*) die "'$v' is not a whole number (see --help)" ;; esac
done
[ "$users" -ge 3 ] && [ "$users" -le 19000 ] || die "--users must be 3..19000 (one client process)"
[ "$duration" -ge 4 ] || die "--duration must be at least 4 s"
[ "$lease" -ge 500 ] || die "--lease must be at least 500 ms"
[ "$redis_port" -ge 1024 ] && [ "$redis_port" -le 55530 ] || die "--redis-port must be 1024..55530 (its buses are +10000)"

if [ -z "$bin" ]; then
    for d in "$root/_build/demo/examples" "$root/_build/dev/examples"; do
        [ -x "$d/hb-server" ] && [ -x "$d/hb-client" ] && [ -x "$d/hb-monitor" ] &&
            [ -x "$d/hb-audit" ] && { bin=$d; break; }
    done
fi
tools=(hb-server hb-client hb-monitor hb-audit)
declare -A tool
for t in "${tools[@]}"; do
    if [ -n "$bin" ]; then tool[$t]="$bin/$t"; else tool[$t]=$(command -v "$t" || true); fi
    [ -n "${tool[$t]}" ] && [ -x "${tool[$t]}" ] ||
        missing "$t not found: build the examples (cmake ... -DHONGBAO_REDIS=ON) or give --bin DIR"
done
command -v "$redis_server" >/dev/null ||
    missing "redis-server not found ('$redis_server'): apt-get install redis-server, or --redis-server PATH"
command -v redis-cli >/dev/null || missing "redis-cli not found: apt-get install redis-tools"
command -v curl >/dev/null || missing "curl not found: apt-get install curl"
out=${out:-$(mktemp -d)}
mkdir -p "$out"
rm -f "$out/pids" "$out/instances.csv" "$out/monitor.csv"

# Every bound: the cluster's start, the run, the lease's expiry, and room to stop.
limit=$((duration + lease / 1000 + 90))
hosts=(127.0.0.11 127.0.0.12 127.0.0.13)
names=(i1 i2 i3)
cluster="$out/redis"

. "$here/../common/procs.sh"
cluster_up=0
client_pid=""
cleanup() {
    stop_all
    [ -n "$client_pid" ] && kill -TERM "$client_pid" 2>/dev/null && wait "$client_pid" || true
    [ "$cluster_up" -eq 1 ] && bash "$here/cluster.sh" stop "$cluster" || true
    cluster_up=0
}
trap cleanup EXIT
trap 'echo "fleet: interrupted" >&2; exit 130' INT
trap 'echo "fleet: terminated" >&2; exit 143' TERM

fail() {
    echo "fleet: $*" >&2
    local f
    for f in "$out"/*.log; do
        [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -5 "$f" >&2; }
    done
    exit 1
}

# An instance that ended at once saying its hb-server has no hiredis: say so (exit 3).
proc_ended() {
    grep -qs 'built without hiredis' "$out/$1.log" &&
        missing "${tool[hb-server]} was built without hiredis: rebuild with -DHONGBAO_REDIS=ON (libhiredis-dev)"
    return 0
}

# child_of PID: the only child of PID (hb-server under its timeout), or nothing.
child_of() { awk '{ print $1 }' "/proc/$1/task/$1/children" 2>/dev/null || true; }
get() { curl -sf --max-time 5 "http://$1$2"; }

# The cluster: every node bounded (cluster.sh runs each under timeout --signal=KILL).
echo "fleet: starting a Redis Cluster of 6 nodes on 127.0.0.1:$redis_port..$((redis_port + 5))"
cluster_up=1
HB_REDIS_LIFETIME=$((limit + 60)) HB_REDIS_SERVER=$redis_server \
    bash "$here/cluster.sh" start "$cluster" "$redis_port" >"$out/cluster.log" 2>&1 ||
    fail "the Redis Cluster did not start (see $out/cluster.log and $cluster/*/redis.log)"
seeds=$(cat "$cluster/seeds")

launch monitor "${tool[hb-monitor]}" --listen 127.0.0.1:0 --http "127.0.0.1:$dashboard" \
    --csv "$out/monitor.csv" --instances-csv "$out/instances.csv" --duration "$limit"
wait_for 10 "hb-monitor start" printed monitor "dashboard on"
mon_port=$(port_in monitor 's/^hb-monitor: reports on 127\.0\.0\.1:\([0-9]*\)$/\1/p')
dash_port=$(port_in monitor 's#^hb-monitor: dashboard on http://127\.0\.0\.1:\([0-9]*\)/.*#\1#p')

# The instances: one thread each (three share this machine), their own host address, the same
# cluster; i1 and i2 take part in electing the fleet's one generator (one makes the plan, the
# other stands by). Each under timeout, which hands our SIGTERM on to it.
declare -A addr ctl server_pid
for k in 0 1 2; do
    h=${hosts[$k]} n=${names[$k]} gen=()
    [ "$n" = i3 ] || gen=(--generator)
    launch "$n" timeout -s TERM "$limit" "${tool[hb-server]}" --listen "$h:$port" --control "$h:0" \
        --monitor "127.0.0.1:$mon_port" --redis "$seeds" --instance "$n" --redis-lease "$lease" \
        --redis-replicas 1 --threads 1 "${gen[@]}"
done
for k in 0 1 2; do
    h=${hosts[$k]} n=${names[$k]}
    wait_for 15 "$n start" printed "$n" "control endpoint on"
    server_pid[$n]=$(child_of "$(pid_of "$n")")
    [ -n "${server_pid[$n]}" ] || fail "no hb-server under $n's timeout"
    echo "$n-server ${server_pid[$n]}" >>"$out/pids"
    addr[$n]="$h:$(port_in "$n" "s/^hb-server: listening on ${h//./\\.}:\([0-9]*\) .*/\1/p")"
    ctl[$n]="$h:$(port_in "$n" "s#^hb-server: control endpoint on http://${h//./\\.}:\([0-9]*\)/.*#\1#p")"
done
servers="${addr[i1]},${addr[i2]},${addr[i3]}"
echo "fleet: instances i1 ${addr[i1]}, i2 ${addr[i2]}, i3 ${addr[i3]}; dashboard on" \
     "http://127.0.0.1:$dash_port/ ; outputs in $out"

# The fleet's shake plan, set through i1 (any instance would do): the generator makes it into the
# budget every instance draws from. And send-envelopes created on i1 for users wherever they are
# (their notices travel through the instances' inboxes).
get "${ctl[i1]}" "/yaohongbao?qps=$envelopes&sum=$((envelopes * duration))" >/dev/null ||
    fail "i1 refused /yaohongbao"
get "${ctl[i1]}" "/fahongbao?qps=$sends&sum=$((sends * duration))&min=0&max=$((users - 1))" \
    >/dev/null || fail "i1 refused /fahongbao"
echo "fleet: $users users shaking $qps/s in all for $duration s; the generator (i1 or i2) makes" \
     "$envelopes shake envelopes/s, i1 $sends send-envelopes/s$([ "$kill_one" -eq 1 ] &&
         echo "; i3 SIGKILLed halfway")"
t0=$(now_ms)
launch client timeout -s TERM $((duration + 30)) "${tool[hb-client]}" --servers "$servers" \
    --min 0 --max $((users - 1)) --total "$users" --qps "$qps" --duration "$duration" \
    --control off --monitor "127.0.0.1:$mon_port" --report-interval 3600

if [ "$kill_one" -eq 1 ]; then
    wait_until $((t0 + duration * 500))
    # SIGKILL to hb-server itself, as a machine that dies: nothing reported, nothing given back.
    # (Its timeout then ends too, having lost its child.)
    check_alive
    kill -KILL "${server_pid[i3]}"
    wait "$(pid_of i3)" 2>/dev/null || true
    forget i3
    echo "fleet: i3 (pid ${server_pid[i3]}) SIGKILLed; its users fail over to their next instance"
fi

# The client ends by itself after --duration: from then on it is awaited, no longer watched (the
# cleanup still stops it).
wait_until $((t0 + duration * 1000))
client_pid=$(pid_of client)
forget client
client_ended() { ! kill -0 "$client_pid" 2>/dev/null; }
wait_for 30 "end of hb-client" client_ended
rc=0
wait "$client_pid" || rc=$?
client_pid=""
[ "$rc" -eq 0 ] || fail "hb-client exited with status $rc"

if [ "$kill_one" -eq 1 ]; then
    # i3's lease ends at its deadline: the survivors' sweeps (every half lease, over every
    # partition of the budget) retire it, what it held counted expired. Until no partition's
    # lease set names i3.
    parts=$("${tool[hb-audit]}" --redis "$seeds" 2>/dev/null | sed -n 's/.* over \([0-9]*\) partitions$/\1/p')
    [ -n "$parts" ] || fail "hb-audit --redis did not say how many partitions the budget has"
    i3_lease_gone() {
        local p
        for ((p = 0; p < parts; p++)); do
            [ -z "$(timeout 10 redis-cli -c -h 127.0.0.1 -p "$redis_port" ZSCORE "hb:{b:$p}:z" i3)" ] ||
                return 1
        done
    }
    wait_for $((lease * 2 / 1000 + 10)) "expiry of i3's lease" i3_lease_gone
fi

# Stop by PID: the instances (they report what they handed out and give back the rest), then the
# monitor (it writes every second it still holds).
for n in i1 i2 i3; do
    pid_of "$n" >/dev/null && stop "$n"
done
stop monitor

rc=0
"${tool[hb-audit]}" --redis "$seeds" >"$out/audit.txt" 2>&1 || rc=$?
"${tool[hb-audit]}" --json --redis "$seeds" >"$out/audit.json" 2>/dev/null || true
case $rc in
0) verdict="balanced" ;;
1) verdict="VIOLATIONS (see $out/audit.txt)" ;;
*) fail "hb-audit --redis could not read the books (exit $rc): $(tail -1 "$out/audit.txt")" ;;
esac

# The table: per instance from the monitor's per-instance CSV (users: its connections at their
# most; requests: its users' shakes and claims; the shake envelopes it handed out; the claims it
# granted); the fleet from the audit.
num() { grep -o "\"$1\":[0-9]*" "$out/audit.json" | head -1 | cut -d: -f2; }
{
    printf '%-8s %-22s %8s %10s %10s %8s\n' instance address users requests "handed out" claims
    for n in i1 i2 i3; do
        awk -F, -v a="${addr[$n]}" -v n="$n" '
            NR > 1 && $2 == "server" && $3 == a { if ($9 > c) c = $9; s += $5; h += $6; g += $8 }
            END { printf "%-8s %-22s %8d %10d %10d %8d\n", n, a, c, s, h, g }' "$out/instances.csv"
    done
    echo "fleet: $(num envelopes) send-envelopes, $(num claims) claims granted, each judged once" \
         "in Redis whichever instance its claimer was on"
    echo "fleet: generated $(num generated) = handed out $(num handed_out) + queued $(num queued)" \
         "+ leased $(num leased) + expired $(num expired) shake envelopes; audit: $verdict"
} | tee "$out/table.txt"
echo "fleet: hb-client:$(grep '^summary:' "$out/client.log" |
    grep -o ' \(users\|shakes\|envelopes\|granted\|failovers\)=[0-9]*' | tr -d '\n')"
[ "$rc" -eq 0 ] || exit 1
