#!/usr/bin/env bash
# A real time-series database reads us. Two checks, each starting hb-monitor, hb-server (reporting
# to the monitor) and a small load (hb-client) on free loopback ports, every process started and
# stopped by its PID:
#   lint    the Prometheus exposition of hb-server's /metrics and hb-monitor's /metrics, with
#           servers', clients' and NIC data in it, passes `promtool check metrics` (and promtool
#           does catch a bad exposition); the shipped example configuration passes
#           `promtool check config`.
#   scrape  a real Prometheus (Debian's), on examples/prometheus/prometheus.yml with its targets
#           pointed at the running server and monitor, a temporary storage directory and a free
#           port, scrapes both; through its HTTP query API, rate() of the server's shake counter
#           over 20 s matches the monitor's own per-second figures of the same seconds within 2 %.
# Usage: tests/prometheus/run.sh lint|scrape BUILD_DIR WORKDIR
# Prometheus missing: exit 77 (CTest's skip) with "SKIP: <reason>", except under tests/run.sh
# (HB_TEST=1), which installs it (.ci/deps.sh), where it is a failure.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 lint|scrape BUILD_DIR WORKDIR" >&2; exit 2; }
mode=$1
build=$2
work=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$build/examples"
qps=2000      # the client's shakes a second (200 users, 10 each)
window=20     # the rate() window, seconds
tolerance=2   # percent

rm -rf "$work"
mkdir -p "$work"

for tool in promtool prometheus; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ "${HB_TEST:-}" = 1 ]; then
            echo "FAIL: $tool is missing: tests/run.sh installs Debian's prometheus (.ci/deps.sh)" >&2
            exit 1
        fi
        echo "SKIP: $tool is not installed (Debian package prometheus; .ci/deps.sh installs it)"
        exit 77
    fi
done

fail() {
    echo "FAIL: $*" >&2
    for f in monitor.err server.err client.err prometheus.err; do
        [ -s "$work/$f" ] && { echo "--- $f (last lines)" >&2; tail -15 "$work/$f" >&2; }
    done
    exit 1
}

pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# wait_for SECONDS COMMAND...
. "$root/tests/wait_for.sh"

# port_of FILE SED_EXPR: the port a program printed.
port_of() { sed -n "$2" "$1" | head -1; }
printed() { grep -q "$2" "$work/$1" 2>/dev/null; }

# stop NAME PID: SIGTERM, then its exit status must be 0.
stop() {
    local rc=0
    kill -TERM "$2" 2>/dev/null || true
    wait "$2" || rc=$?
    [ "$rc" -eq 0 ] || fail "$1 exited with status $rc after SIGTERM"
}

http_get() { curl -sf --max-time 5 "$@"; }

start_fleet() {
    "$bin/hb-monitor" --listen 127.0.0.1:0 --http 127.0.0.1:0 --history 600 \
        >"$work/monitor.out" 2>"$work/monitor.err" &
    mon_pid=$!
    pids+=("$mon_pid")
    wait_for 10 printed monitor.out "dashboard on" || fail "hb-monitor did not start"
    mon_report=$(port_of "$work/monitor.out" 's/^hb-monitor: reports on 127\.0\.0\.1:\([0-9]*\)$/\1/p')
    mon_http=$(port_of "$work/monitor.out" 's#^hb-monitor: dashboard on http://127\.0\.0\.1:\([0-9]*\)/.*#\1#p')

    "$bin/hb-server" --listen 127.0.0.1:0 --control 127.0.0.1:0 --ledger off --threads 1 \
        --monitor "127.0.0.1:$mon_report" >"$work/server.out" 2>"$work/server.err" &
    srv_pid=$!
    pids+=("$srv_pid")
    wait_for 10 printed server.out "control endpoint on" || fail "hb-server did not start"
    srv_port=$(port_of "$work/server.out" 's/^hb-server: listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p')
    srv_http=$(port_of "$work/server.out" 's#^hb-server: control endpoint on http://127\.0\.0\.1:\([0-9]*\)/.*#\1#p')
    printed server.out "counting network interface" || fail "hb-server counts no network interface"
    http_get "http://127.0.0.1:$srv_http/yaohongbao?qps=200&sum=1000000" >/dev/null ||
        fail "cannot start the shake envelopes"

    "$bin/hb-client" --server "127.0.0.1:$srv_port" --min 0 --max 199 --qps "$qps" \
        --monitor "127.0.0.1:$mon_report" --control 0 --duration 150 --report-interval 3600 \
        >"$work/client.out" 2>"$work/client.err" &
    cli_pid=$!
    pids+=("$cli_pid")
    wait_for 10 printed client.out "counting network interface" || fail "hb-client counts no network interface"
    echo "prometheus: hb-monitor (pid $mon_pid) on $mon_report/$mon_http, hb-server (pid $srv_pid)" \
         "on $srv_port/$srv_http, hb-client (pid $cli_pid) at $qps shakes/s"
}

stop_fleet() {
    stop hb-client "$cli_pid"
    stop hb-server "$srv_pid"
    stop hb-monitor "$mon_pid"
    pids=()
}

# The monitor's /metrics shows a second of both types with NIC data.
monitor_has_nic() {
    http_get "http://127.0.0.1:$mon_http/metrics" >"$work/monitor.metrics" || return 1
    grep -q '^hongbao_server_nic_hosts 1$' "$work/monitor.metrics" &&
        grep -q '^hongbao_client_nic_hosts 1$' "$work/monitor.metrics" &&
        grep -q '^hongbao_server_nic_rx_packets_per_second [1-9]' "$work/monitor.metrics"
}

lint() {
    start_fleet
    wait_for 30 monitor_has_nic || fail "the monitor shows no second with NIC data from both types"
    http_get "http://127.0.0.1:$srv_http/metrics" >"$work/server.metrics" || fail "GET server /metrics"
    for who in server monitor; do
        promtool check metrics <"$work/$who.metrics" >"$work/promtool-$who.log" 2>&1 ||
            { cat "$work/promtool-$who.log" >&2; fail "promtool check metrics: hb-$who's /metrics"; }
        echo "prometheus: promtool check metrics: hb-$who's /metrics ($(grep -c '^# TYPE' "$work/$who.metrics") families) passes"
    done
    for family in hongbao_frame_shake_total hongbao_nic_rx_packets_total hongbao_nic_tx_bytes_per_second; do
        grep -q "^# TYPE $family " "$work/server.metrics" || fail "hb-server's /metrics has no $family"
    done
    for family in hongbao_server_frame_shake_total hongbao_server_nic_rx_packets_total \
                  hongbao_client_nic_tx_packets_per_second hongbao_client_latency_p99_seconds; do
        grep -q "^# TYPE $family " "$work/monitor.metrics" || fail "hb-monitor's /metrics has no $family"
    done
    ! grep -q 'nic_host_\|_us ' "$work/server.metrics" "$work/monitor.metrics" ||
        fail "an identity or a microsecond series is exposed"
    # Per instance: the server by the address it serves at, the client by its connection.
    grep -q "^hongbao_server_instance_requests_per_second{instance=\"127\.0\.0\.1:$srv_port\"} [0-9]" \
        "$work/monitor.metrics" || fail "hb-monitor's /metrics has no line for hb-server 127.0.0.1:$srv_port"
    grep -q '^hongbao_client_instance_requests_per_second{instance="127\.0\.0\.1:[0-9]*"} [0-9]' \
        "$work/monitor.metrics" || fail "hb-monitor's /metrics has no line for the hb-client process"
    # promtool is no rubber stamp: what we used to expose (microseconds) it refuses.
    if printf '# HELP x_latency_p99_us x\n# TYPE x_latency_p99_us gauge\nx_latency_p99_us 1\n' |
        promtool check metrics >/dev/null 2>&1; then
        fail "promtool accepted a metric in microseconds: the check proves nothing"
    fi
    promtool check config "$root/examples/prometheus/prometheus.yml" >"$work/promtool-config.log" 2>&1 ||
        { cat "$work/promtool-config.log" >&2; fail "promtool check config: the example"; }
    stop_fleet
    echo "prometheus: PASS (lint)"
}

# query EXPR TIME: the scalar value of an instant query, printed; 1 when there is none.
query() {
    http_get "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" \
        --data-urlencode "time=$2" >"$work/query.json" || return 1
    python3 - "$work/query.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = d.get("data", {}).get("result", [])
if d.get("status") != "success" or len(r) != 1:
    sys.exit(1)
print(r[0]["value"][1])
PY
}

# monitor_mean FIRST LAST: the monitor's own server frame_shake per second, averaged over the
# seconds FIRST..LAST (every one of them output); 1 while one is missing.
monitor_mean() {
    http_get "http://127.0.0.1:$mon_http/api/series?seconds=120" >"$work/series.json" || return 1
    python3 - "$work/series.json" "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
first, last = int(sys.argv[2]), int(sys.argv[3])
secs = d["seconds"]
vals = dict(zip(secs, d["server"]["per_second"]["frame_shake"]))
want = [vals.get(s) for s in range(first, last + 1)]
if any(v is None for v in want):
    sys.exit(1)
print(sum(want) / len(want))
PY
}

# The monitor's last two output server seconds both saw the full rate (within 1 %: a shake sent
# at the end of a second may arrive in the next).
steady() {
    http_get "http://127.0.0.1:$mon_http/api/series?seconds=2" >"$work/steady.json" || return 1
    python3 - "$work/steady.json" "$qps" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
q = int(sys.argv[2])
v = d["server"]["per_second"].get("frame_shake", [])
sys.exit(0 if len(v) == 2 and all(x is not None and abs(x - q) <= q / 100 for x in v) else 1)
PY
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

targets_up() {
    http_get "http://127.0.0.1:$prom_port/api/v1/targets" >"$work/targets.json" || return 1
    [ "$(grep -o '"health":"up"' "$work/targets.json" | wc -l)" -eq 2 ]
}

scraped_after() { # a server sample at or after $1 is in Prometheus
    local ts
    ts=$(query 'timestamp(hongbao_frame_shake_total{job="hb-server"})' "$(date +%s)") || return 1
    python3 -c "import sys; sys.exit(0 if float('$ts') >= $1 else 1)"
}

scrape() {
    start_fleet
    prom_port=$(free_port)
    # The shipped example, its targets pointed at this run's ports.
    sed -e "s/127\.0\.0\.1:8989/127.0.0.1:$srv_http/" -e "s/127\.0\.0\.1:8080/127.0.0.1:$mon_http/" \
        "$root/examples/prometheus/prometheus.yml" >"$work/prometheus.yml"
    promtool check config "$work/prometheus.yml" >/dev/null || fail "promtool check config"
    prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
        --storage.tsdb.retention.time=1h --web.listen-address="127.0.0.1:$prom_port" \
        --log.level=warn >"$work/prometheus.out" 2>"$work/prometheus.err" &
    prom_pid=$!
    pids+=("$prom_pid")
    wait_for 30 http_get "http://127.0.0.1:$prom_port/-/ready" -o /dev/null ||
        fail "prometheus (pid $prom_pid) not ready on 127.0.0.1:$prom_port"
    wait_for 15 targets_up || fail "prometheus does not see both targets up"
    echo "prometheus: Prometheus (pid $prom_pid) on 127.0.0.1:$prom_port scrapes both every second"

    # The window starts once the monitor has seen the load at its full rate, and ends window
    # seconds later; then Prometheus must hold a scrape from that moment, and the monitor every
    # second of the window.
    wait_for 30 steady || fail "the monitor never saw $qps shakes a second"
    start=$(($(date +%s) + 1))
    end=$((start + window))
    wait_for $((window + 10)) scraped_after "$end" || fail "no scrape after the window"
    wait_for 15 monitor_mean "$start" $((end - 1)) >/dev/null ||
        fail "the monitor did not output every second of the window"
    mean=$(monitor_mean "$start" $((end - 1)))
    rate=$(query "rate(hongbao_frame_shake_total{job=\"hb-server\"}[${window}s])" "$end") ||
        fail "no rate() from Prometheus"
    mon_rate=$(query "rate(hongbao_server_frame_shake_total{job=\"hb-monitor\"}[${window}s])" "$end") ||
        fail "no rate() of the monitor's counter from Prometheus"
    nic=$(query "rate(hongbao_nic_rx_packets_total{job=\"hb-server\"}[${window}s])" "$end") ||
        fail "no NIC rate from Prometheus"
    echo "prometheus: seconds $start..$((end - 1)): the monitor's own figure $mean shakes/s;" \
         "Prometheus at $end: rate(hongbao_frame_shake_total[${window}s]) of hb-server $rate/s," \
         "of the monitor's counter $mon_rate/s; the server's NIC received $nic packets/s"
    python3 - "$rate" "$mean" "$mon_rate" "$nic" "$tolerance" <<'PY' || fail "rates disagree"
import sys
rate, mean, mon_rate, nic, tol = map(float, sys.argv[1:])
ok = True
for name, v in (("hb-server's counter", rate), ("the monitor's counter", mon_rate)):
    diff = abs(v - mean) / mean * 100
    print("prometheus: %s: %.1f/s against the monitor's %.1f/s: %.2f %% apart (at most %g %%)"
          % (name, v, mean, diff, tol))
    ok = ok and diff <= tol
if nic <= mean:  # every shake is a packet in, on the loopback, at the least
    print("prometheus: the NIC rate %.1f is below the shake rate" % nic)
    ok = False
sys.exit(0 if ok else 1)
PY
    stop prometheus "$prom_pid"
    stop_fleet
    echo "prometheus: PASS (scrape)"
}

case "$mode" in
lint) lint ;;
scrape) scrape ;;
*) echo "usage: $0 lint|scrape BUILD_DIR WORKDIR" >&2; exit 2 ;;
esac
