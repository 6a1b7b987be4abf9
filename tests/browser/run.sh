#!/usr/bin/env bash
# Browser test of hb-monitor's dashboard. Starts hb-monitor on free loopback ports, feeds it 30 s
# of three server instances' and a client's reports (monitor_feeder), checks that /api/series
# parses and that its per-instance series sum to the totals, loads the page in headless Chromium
# and checks that every chart received data (the page's data-ok, data-points and, for the network
# chart, data-net-points markers; a line per instance), saves a screenshot; then checks the
# outputs written at exit (CSV rows, per-instance lines and CSV, gnuplot charts) and that the page
# says so clearly when the chart library is missing.
# Usage: tests/browser/run.sh HB_MONITOR MONITOR_FEEDER WORKDIR
# Exits 0 with "SKIP: <reason>" only when Chromium is missing and cannot be installed.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 HB_MONITOR MONITOR_FEEDER WORKDIR" >&2; exit 2; }
monitor=$1
feeder=$2
work=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=30
servers=3 # server instances: 127.0.0.1:7101..7103 in their reports (labels; nothing listens)
chart_dir=/usr/share/javascript/chart.js

rm -rf "$work"
mkdir -p "$work"

find_chromium() {
    command -v chromium || command -v chromium-browser || command -v google-chrome || true
}
chromium=$(find_chromium)
if [ -z "$chromium" ] || [ ! -e "$chart_dir/chart.min.js" ]; then
    echo "browser: installing chromium and libjs-chart.js (log: $work/deps.log)"
    "$root/.ci/deps.sh" chromium libjs-chart.js >"$work/deps.log" 2>&1 || true
    chromium=$(find_chromium)
fi
if [ -z "$chromium" ]; then
    echo "SKIP: chromium is not installed and could not be installed (see $work/deps.log)"
    exit 0
fi
if [ ! -e "$chart_dir/chart.min.js" ] && [ ! -e "$chart_dir/chart.js" ]; then
    echo "FAIL: libjs-chart.js is missing from $chart_dir and could not be installed" >&2
    exit 1
fi

fail() {
    echo "FAIL: $*" >&2
    for f in monitor.out monitor.err chromium.log; do
        [ -s "$work/$f" ] && { echo "--- $f (last lines)" >&2; tail -20 "$work/$f" >&2; }
    done
    exit 1
}

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# run_chromium ARGS...: one headless Chromium run with a throw-away profile, bounded in time.
run_chromium() {
    local profile rc=0
    profile=$(mktemp -d)
    timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --hide-scrollbars --mute-audio --user-data-dir="$profile" \
        "$@" 2>>"$work/chromium.log" || rc=$?
    rm -rf "$profile"
    return $rc
}

# start_monitor NAME ARGS...: start hb-monitor on free ports; sets mon_pid, report_port, http_port.
start_monitor() {
    local name=$1
    shift
    "$monitor" --listen 127.0.0.1:0 --http 127.0.0.1:0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
    mon_pid=$!
    pids+=("$mon_pid")
    for _ in $(seq 200); do
        grep -q "dashboard on" "$work/$name.out" 2>/dev/null && break
        kill -0 "$mon_pid" 2>/dev/null || break
        sleep 0.05
    done
    report_port=$(sed -n 's/^hb-monitor: reports on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/$name.out")
    http_port=$(sed -n 's#^hb-monitor: dashboard on http://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' \
        "$work/$name.out")
    if [ -z "$report_port" ] || [ -z "$http_port" ]; then
        fail "$name did not start"
    fi
}

# --- 1. the dashboard with data
start_monitor monitor --csv "$work/monitor.csv" --plot "$work/plots" --per-instance \
    --instances-csv "$work/instances.csv"
echo "browser: hb-monitor reports on $report_port, dashboard on http://127.0.0.1:$http_port/"
"$feeder" "$report_port" "$seconds" "$servers" >"$work/feeder.out" || fail "the feeder failed"
for _ in $(seq 200); do
    [ "$(grep -c '^[0-9]* client \[1\]' "$work/monitor.out")" -ge "$seconds" ] && break
    sleep 0.05
done
[ "$(grep -c "^[0-9]* server \[$servers\]" "$work/monitor.out")" -eq "$seconds" ] || fail "server seconds not all output"
[ "$(grep -c '^[0-9]* client \[1\]' "$work/monitor.out")" -eq "$seconds" ] || fail "client seconds not all output"
# --per-instance: a line per instance after each second's line.
[ "$(grep -c '^  [0-9]* server 127\.0\.0\.1:710[1-3] \[1\] req=' "$work/monitor.out")" -eq $((servers * seconds)) ] ||
    fail "--per-instance: expected $((servers * seconds)) server instance lines"

# The series parses as JSON; each second's server requests are the sum of its instances'.
python3 - "http://127.0.0.1:$http_port/api/series?seconds=$seconds" "$servers" <<'PY' ||
import json, sys, urllib.request
d = json.load(urllib.request.urlopen(sys.argv[1], timeout=10))
servers = int(sys.argv[2])
inst = d["instances"]
sv = [i for i in inst if i["type"] == "server"]
labels = sorted(i["label"] for i in sv)
assert labels == ["127.0.0.1:%d" % (7101 + j) for j in range(servers)], labels
assert len([i for i in inst if i["type"] == "client"]) == 1, inst
assert d["instance_table"]["tracked"] == servers + 1, d["instance_table"]
assert d["instance_table"]["untracked_reports"] == 0, d["instance_table"]
total = d["server"]["per_second"]["requests"]
assert len(total) == len(d["seconds"]) and None not in total, total
for k, t in enumerate(total):
    assert t == sum(i["requests"][k] for i in sv), (k, t)
print("browser: /api/series parses; %d server instances sum to the totals over %d seconds"
      % (servers, len(total)))
PY
    fail "/api/series: the per-instance series do not parse or do not sum to the totals"

url="http://127.0.0.1:$http_port/"
run_chromium --virtual-time-budget=8000 --dump-dom "$url" >"$work/dom.html" || fail "chromium --dump-dom failed"
body=$(grep -o '<body[^>]*>' "$work/dom.html" | head -1)
echo "browser: $body"
case "$body" in *'data-chart-lib="ok"'*) ;; *) fail "the chart library did not load: $body" ;; esac
case "$body" in *'data-ok="1"'*) ;; *) fail "some chart has no non-zero point: $body" ;; esac
points=$(printf '%s' "$body" | sed -n 's/.*data-points="\([0-9]*\)".*/\1/p')
[ "${points:-0}" -eq "$seconds" ] || fail "expected $seconds seconds plotted, the page says ${points:-none}"
net=$(printf '%s' "$body" | sed -n 's/.*data-net-points="\([0-9]*\)".*/\1/p')
[ "${net:-0}" -eq "$seconds" ] || fail "expected $seconds seconds of packets/s in the network chart, the page says ${net:-none}"
lines=$(printf '%s' "$body" | sed -n 's/.*data-instance-lines="\([0-9]*\)".*/\1/p')
[ "${lines:-0}" -eq $((servers + 1)) ] || fail "expected $((servers + 1)) lines in the per-instance chart, the page says ${lines:-none}"
for label in 'server 127.0.0.1:7101' 'server 127.0.0.1:7102' 'server 127.0.0.1:7103' 'client 127.0.0.1:'; do
    case "$body" in *"data-instance-labels=\""*"$label"*) ;;
        *) fail "the per-instance chart's legend has no '$label': $body" ;; esac
done
grep -q 'Requests per second, per instance' "$work/dom.html" || fail "no per-instance chart on the page"
grep -q 'Network packets per second' "$work/dom.html" || fail "no network chart on the page"
grep -q "reporters connected" "$work/dom.html" || fail "the status line was not updated"

run_chromium --virtual-time-budget=8000 --window-size=1280,1600 \
    --screenshot="$work/dashboard.png" "$url" >/dev/null || fail "chromium --screenshot failed"
[ "$(head -c 4 "$work/dashboard.png" | od -An -tx1 | tr -d ' ')" = "89504e47" ] ||
    fail "no PNG screenshot"
echo "browser: screenshot $work/dashboard.png"

# --- 2. the outputs written at exit
kill -TERM "$mon_pid"
rc=0
wait "$mon_pid" || rc=$?
[ "$rc" -eq 0 ] || fail "hb-monitor exited with $rc after SIGTERM"
[ "$(wc -l <"$work/monitor.csv")" -eq $((2 * seconds + 1)) ] || fail "CSV: expected $((2 * seconds)) rows"
head -1 "$work/monitor.csv" | grep -q '^second,type,status,reports,' || fail "CSV: no header"
[ "$(grep -c ",server,complete,$servers," "$work/monitor.csv")" -eq "$seconds" ] || fail "CSV: server rows"
head -1 "$work/instances.csv" | grep -qx 'second,type,instance,reports,requests,shake_handed_out,shake_received,claims_granted,connections' ||
    fail "--instances-csv: no header"
[ "$(wc -l <"$work/instances.csv")" -eq $(((servers + 1) * seconds + 1)) ] ||
    fail "--instances-csv: expected $(((servers + 1) * seconds)) rows"
if command -v gnuplot >/dev/null 2>&1; then
    for chart in qps envelopes amounts connections latency network; do
        [ -s "$work/plots/$chart.png" ] || fail "--plot: no $chart.png"
    done
    echo "browser: gnuplot charts in $work/plots"
else
    grep -q "gnuplot is not installed" "$work/monitor.err" || fail "--plot: missing gnuplot not reported"
fi

# --- 3. the page without the chart library
mkdir -p "$work/empty-assets"
start_monitor missing --assets "$work/empty-assets"
grep -q "chart library is missing" "$work/missing.err" || fail "missing chart library not logged"
run_chromium --virtual-time-budget=3000 --dump-dom "http://127.0.0.1:$http_port/" \
    >"$work/dom-missing.html" || fail "chromium --dump-dom failed (missing library)"
grep -q 'data-chart-lib="missing"' "$work/dom-missing.html" || fail "the page did not notice the missing library"
grep -q "The chart library is missing" "$work/dom-missing.html" || fail "the page does not say the library is missing"
kill -TERM "$mon_pid"
rc=0
wait "$mon_pid" || rc=$?
[ "$rc" -eq 0 ] || fail "hb-monitor (missing library) exited with $rc"

echo "browser: PASS ($points seconds plotted in every chart)"
