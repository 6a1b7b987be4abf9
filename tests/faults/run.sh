#!/usr/bin/env bash
# Fault and bad-input tests for the example programs: each fault runs against a freshly started
# hb-server (loopback, free ports, 2 threads) while a well-behaved user times every reply; the
# fault must be counted in the right server counter and the server's RSS must come back to its
# baseline. Prints a table and writes it to BUILD_DIR/tests/faults/results.md.
# Usage: tests/faults/run.sh BUILD_DIR   (a CMake build tree with the examples and tests built)
#        HB_FAULTS="fault_sigpipe_control fault_sigpipe_users" tests/faults/run.sh BUILD_DIR
# Exit status: 0 when every expectation held, 1 otherwise (each failure is named on stderr).
set -uo pipefail

build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd) || exit 2
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$build/examples
tool=$build/tests/faults_misbehave
work=$build/tests/faults
results=$work/results.md
mkdir -p "$work"
rm -f "$work"/*.log

for f in "$bin/hb-server" "$bin/hb-monitor" "$bin/hb-client" "$tool"; do
    [ -x "$f" ] || { echo "faults: $f is missing: build the examples and tests first" >&2; exit 2; }
done

sanitize=$(sed -n 's/^HONGBAO_SANITIZE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)
compiler=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)

# The well-behaved user's bound on every reply, and the RSS tolerance: after <= before +
# max(RSS_SLACK_KB, 25 % of before). Sanitized builds are slower and ASan's allocator keeps
# freed memory in quarantine, so they get more room.
if [ -n "$sanitize" ]; then
    BOUND_MS=2000 RSS_SLACK_KB=8192 PEAK_SLOW_KB=16384
else
    BOUND_MS=1000 RSS_SLACK_KB=2048 PEAK_SLOW_KB=4096
fi

# Waits give up after WAIT_S seconds and a SIGTERM'd program must end within STOP_S, so even a
# server that hangs costs a bounded time; faults not yet started when BUDGET_S has passed are
# not run (and fail).
WAIT_S=15 STOP_S=10 BUDGET_S=240

# ---- processes: every one this script starts, stopped by PID only ----

declare -A marker=() # PID -> the program path its command line must contain
cleanup() {
    local p
    for p in "${!marker[@]}"; do
        own "$p" && kill -TERM "$p" 2>/dev/null
    done
    for _ in $(seq 50); do
        local alive=0
        for p in "${!marker[@]}"; do own "$p" && alive=1; done
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    for p in "${!marker[@]}"; do
        own "$p" && kill -KILL "$p" 2>/dev/null
    done
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# own PID: PID is alive and still the program this script started under it.
own() {
    local m=${marker[$1]:-}
    [ -n "$m" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$m"
}

# start_bg VAR LOG [--nofile N] PROGRAM ARGS...: start PROGRAM in the background (a subshell
# that execs it, so $! is the program itself) and set VAR to its PID. If something wraps it,
# the PID is that of the child running PROGRAM (found by parent and command line, never by name
# alone). VAR_LAUNCH keeps the PID to wait for.
start_bg() {
    local var=$1 log=$2 nofile=""
    shift 2
    if [ "$1" = "--nofile" ]; then
        nofile=$2
        shift 2
    fi
    if [ -n "$nofile" ]; then
        (ulimit -n "$nofile" && exec "$@") >"$log" 2>&1 &
    else
        (exec "$@") >"$log" 2>&1 &
    fi
    local launch=$! pid=$! prog=$1
    [ "$1" = "$VALGRIND" ] && prog=$2
    marker[$launch]=$prog
    for _ in $(seq 100); do
        own "$launch" && break
        local c
        c=$(pgrep -P "$launch" 2>/dev/null | head -n 1)
        if [ -n "$c" ]; then
            marker[$c]=$prog
            if own "$c"; then
                pid=$c
                break
            fi
            unset "marker[$c]"
        fi
        sleep 0.02
    done
    printf -v "$var" '%s' "$pid"
    printf -v "${var}_LAUNCH" '%s' "$launch"
}

# stop_pid PID LAUNCH TIMEOUT_S: SIGTERM, wait; sets STOP_RC to the exit status (124: it did
# not stop in time and was killed). Not in a $(...) subshell: only this shell can wait for it.
STOP_RC=0
stop_pid() {
    local pid=$1 launch=$2 t=$3
    own "$pid" && kill -TERM "$pid" 2>/dev/null
    local end=$((SECONDS + t))
    while [ $SECONDS -lt $end ] && kill -0 "$launch" 2>/dev/null; do
        sleep 0.05
    done
    if kill -0 "$launch" 2>/dev/null; then
        own "$pid" && kill -KILL "$pid" 2>/dev/null
        wait "$launch" 2>/dev/null
        unset "marker[$pid]" "marker[$launch]"
        STOP_RC=124
        return
    fi
    wait "$launch" 2>/dev/null
    STOP_RC=$?
    unset "marker[$pid]" "marker[$launch]"
}

wait_for_line() { # LOG ERE TIMEOUT_S [PID: give up as soon as it has ended]
    local end=$((SECONDS + $3))
    while [ $SECONDS -lt $end ]; do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null && break
        sleep 0.05
    done
    grep -Eq -- "$2" "$1" 2>/dev/null
}

# ---- HTTP and metrics ----

http_get() { # PORT PATH [TOKEN]: the body on stdout; fails unless HTTP 200
    local auth=""
    [ -n "${3:-}" ] && auth="Authorization: Bearer $3"
    if command -v curl >/dev/null 2>&1; then
        curl -sf --max-time 5 ${auth:+-H "$auth"} "http://127.0.0.1:$1$2"
        return
    fi
    # shellcheck disable=SC2016 # $0, $1 and $2 are the inner shell's
    timeout 5 bash -c 'exec 9<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n" "$1" "$2" >&9
        cat <&9' "$1" "$2" "${auth:+$auth$'\r\n'}" | awk 'NR == 1 { if ($2 != "200") exit 1; next }
        body { print; next } /^\r?$/ { body = 1 }'
}
# http_stat PORT TOKEN NAME: a counter of the HTTP server itself (GET /http-stats).
http_stat() { http_get "$1" /http-stats "$2" | grep -o "\"$3\":[0-9]*" | cut -d: -f2; }
# wait_http_open PORT TOKEN TIMEOUT_S: until that HTTP server has only the asking connection open.
# The kernel's count of connections it dropped from a full listen queue (machine-wide): a peer
# whose handshake the kernel completed and then dropped never reaches the server to be counted.
listen_drops() {
    awk '/^TcpExt:/ { if (!h) { split($0, n); h = 1 } else { for (i = 1; i <= NF; i++) if (n[i] == "ListenDrops") print $i } }' /proc/net/netstat
}

wait_http_open() {
    local v end=$((SECONDS + $3))
    while [ $SECONDS -lt $end ]; do
        v=$(http_stat "$1" "$2" connections_open)
        [ "${v:-9}" -le 1 ] && return 0
        sleep 0.1
    done
    echo "faults: waited ${3}s for the HTTP port $1 to close its connections (last: ${v:-none})" >&2
    return 1
}

# val TEXT NAME: the value of metric NAME in Prometheus TEXT (empty when absent).
val() { awk -v n="$2" '$1 == n { print $2; exit }' <<<"$1"; }
# d NAME: the change of hongbao_NAME between the snapshots BEFORE and AFTER.
d() {
    local a b
    a=$(val "$AFTER" "hongbao_$1")
    b=$(val "$BEFORE" "hongbao_$1")
    echo $((${a:-0} - ${b:-0}))
}
CTL_TOKEN="" # the control token of the server running now, if any
server_metrics() { http_get "$CTL_PORT" /metrics "$CTL_TOKEN"; }
# wait_metric NAME OP VALUE TIMEOUT_S: until hongbao_NAME OP VALUE on the server.
wait_metric() {
    local v end=$((SECONDS + $4))
    while [ $SECONDS -lt $end ]; do
        if ! own "$SRV_PID"; then
            echo "faults: hb-server (pid $SRV_PID) is not running (log: $SRV_LOG)" >&2
            return 1
        fi
        v=$(val "$(server_metrics)" "hongbao_$1")
        [ -n "$v" ] && test "$v" "$2" "$3" && return 0
        sleep 0.1
    done
    echo "faults: waited ${4}s for hongbao_$1 $2 $3 (last: ${v:-none})" >&2
    return 1
}

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
kv() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<<" $1"; } # kv LINE KEY

# ---- one fault: its checks, its row ----

rows=()
failures=()
fault="" done_what="" counted="" served="" mem=""
fault_fails=()

begin() {
    fault=$1
    done_what="" counted="" served="" mem=""
    fault_fails=()
    printf '\n=== %s\n' "$fault"
}
# expect DESCRIPTION TEST-ARGS...: record a failed expectation of the current fault.
expect() {
    local what=$1
    shift
    if ! test "$@" 2>/dev/null; then
        fault_fails+=("$what")
        failures+=("[$fault] $what")
        echo "FAIL: [$fault] $what" >&2
    fi
}
end_row() { # [SKIP reason]
    local verdict=PASS
    [ ${#fault_fails[@]} -gt 0 ] && verdict="FAIL: $(printf '%s; ' "${fault_fails[@]}")"
    [ "${1:-}" = SKIP ] && verdict="SKIP: $2"
    rows+=("| $fault | $done_what | $counted | $served | $mem | ${verdict%; } |")
    echo "$fault: ${verdict%; }"
}
# check_rss BEFORE PEAK AFTER [PEAK_LIMIT_KB]: the after (and peak) bounds; fills mem.
check_rss() {
    local before=$1 peak=$2 after=$3 tol=$RSS_SLACK_KB
    [ $((before / 4)) -gt "$tol" ] && tol=$((before / 4))
    mem="$before / $peak / $after"
    expect "RSS after ($after kB) within $tol kB of before ($before kB)" "$after" -le $((before + tol))
    if [ -n "${4:-}" ]; then
        expect "peak RSS ($peak kB) within $4 kB of before ($before kB)" "$peak" -le $((before + $4))
    fi
}

# ---- the server and the well-behaved user ----

SRV_PID="" SRV_PORT="" CTL_PORT="" SRV_LOG="" MAXCONN=""
start_server() { # NAME [--nofile N] [--valgrind] [hb-server args...]
    local name=$1 pre=() wait_s=20
    shift
    SRV_LOG=$work/$name.server.log
    if [ "${1:-}" = "--nofile" ]; then
        pre=(--nofile "$2")
        shift 2
    fi
    if [ "${1:-}" = "--valgrind" ]; then
        shift
        # shellcheck disable=SC2054 # the commas belong to valgrind's option values
        pre+=("$VALGRIND" --leak-check=full --show-leak-kinds=definite,indirect,possible
            --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=9
            --log-file="$work/$name.valgrind.log")
        wait_s=60
    fi
    start_bg SRV_PID "$SRV_LOG" "${pre[@]}" "$bin/hb-server" --listen 127.0.0.1:0 \
        --control 127.0.0.1:0 --threads 2 "$@"
    if ! wait_for_line "$SRV_LOG" 'control endpoint on' "$wait_s" "$SRV_PID_LAUNCH"; then
        expect "hb-server started (log: $SRV_LOG)" 1 -eq 0
        cat "$SRV_LOG" >&2
        stop_pid "$SRV_PID" "$SRV_PID_LAUNCH" 5
        return 1
    fi
    SRV_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$SRV_LOG")
    CTL_PORT=$(sed -n 's/.*control endpoint on http:\/\/127\.0\.0\.1:\([0-9]*\)\/.*/\1/p' "$SRV_LOG")
    MAXCONN=$(sed -n 's/.*so up to \([0-9]*\) connections.*/\1/p' "$SRV_LOG")
    echo "hb-server pid $SRV_PID: users on $SRV_PORT, control on $CTL_PORT, max $MAXCONN connections"
}
stop_server() { # SIGTERM; expects exit 0
    local rc
    stop_pid "$SRV_PID" "$SRV_PID_LAUNCH" $STOP_S
    rc=$STOP_RC
    expect "hb-server exits 0 on SIGTERM (status $rc; log: $SRV_LOG)" "$rc" -eq 0
}

GOOD_PID="" GOOD_LOG=""
start_good() { # NAME [BOUND_MS]
    GOOD_LOG=$work/$1.good.log
    start_bg GOOD_PID "$GOOD_LOG" "$tool" good --server "127.0.0.1:$SRV_PORT" --user 1 \
        --interval-ms 50 --bound-ms "${2:-$BOUND_MS}" --duration-ms 90000
    wait_metric frame_shake_total -ge 5 $WAIT_S ||
        expect "the well-behaved user is served from the start" 1 -eq 0
}
stop_good() { # fills served; expects every reply in time
    local rc line
    stop_pid "$GOOD_PID" "$GOOD_PID_LAUNCH" $STOP_S
    rc=$STOP_RC
    line=$(grep '^good:' "$GOOD_LOG")
    echo "$line"
    served="$(kv "$line" shakes) shakes, $(kv "$line" replies) replies"
    served+=" ($(kv "$line" overload) overload), max $(kv "$line" max_ms) ms"
    expect "well-behaved user got every reply within $(kv "$line" bound_ms) ms ($GOOD_LOG)" \
        "$rc" -eq 0
}

baseline() { # settle, then BEFORE, RSS0
    wait_metric connections -eq 1 $WAIT_S
    BEFORE=$(server_metrics)
    RSS0=$(rss "$SRV_PID")
}
# settle EXPECTED_CONNECTIONS: wait for the fault's connections to be gone, then AFTER and RSS1.
settle() {
    wait_metric connections -eq "${1:-1}" $WAIT_S ||
        expect "connections back to ${1:-1} after the fault" 1 -eq 0
    AFTER=$(server_metrics)
    RSS1=$(rss "$SRV_PID")
    PEAK=$(hwm "$SRV_PID")
}

run_tool() { # NAME MODE ARGS...: runs the misbehaving peer, prints and keeps its result line
    local name=$1 mode=$2
    shift 2
    TOOL_LOG=$work/$name.$mode.log
    "$tool" "$mode" --timeout-s 20 "$@" >"$TOOL_LOG" 2>&1
    TOOL_RC=$?
    TOOL_LINE=$(grep "^$mode:" "$TOOL_LOG" | tail -n 1)
    echo "$TOOL_LINE"
    expect "$mode peer saw what it expected (status $TOOL_RC; $TOOL_LOG)" "$TOOL_RC" -eq 0
}

# ---- the faults ----

fault_midframe() {
    begin "1. disconnect mid-frame"
    start_server f1 || { end_row; return; }
    start_good f1
    baseline
    run_tool f1 midframe --server "127.0.0.1:$SRV_PORT" --count 1000 --parallel 8 --rate 500
    wait_metric conn_closed_total -ge $(($(val "$BEFORE" hongbao_conn_closed_total) + 1000)) $WAIT_S
    settle 1
    stop_good
    done_what="1,000 connections: 500 sent 7 of the 16 bytes of a login and closed, 500 logged in, sent 7 bytes of a shake and closed (8 at a time)"
    counted="conn_opened +$(d conn_opened_total), conn_closed +$(d conn_closed_total), frame_login +$(d frame_login_total) (whole logins only), frame_shake +$(d frame_shake_total), bad_frames +$(d bad_frames_total)"
    expect "conn_opened +1000" "$(d conn_opened_total)" -eq 1000
    expect "conn_closed +1000" "$(d conn_closed_total)" -eq 1000
    expect "frame_login +500 (the cut logins are not counted)" "$(d frame_login_total)" -eq 500
    expect "bad_frames +0 (a cut frame is not malformed)" "$(d bad_frames_total)" -eq 0
    expect "users online back to 1" "$(val "$AFTER" hongbao_users_online)" -eq 1
    check_rss "$RSS0" "$PEAK" "$RSS1"
    stop_server
    end_row
}

fault_cycles() {
    begin "2. connect/disconnect cycles"
    start_server f2 || { end_row; return; }
    start_good f2
    baseline
    run_tool f2 cycle --server "127.0.0.1:$SRV_PORT" --count 10000 --parallel 16 --rate 3000
    wait_metric conn_closed_total -ge $(($(val "$BEFORE" hongbao_conn_closed_total) + 10000)) $WAIT_S
    settle 1
    stop_good
    done_what="10,000 cycles, 16 in parallel at 3,000/s: 5,000 connect, log in, close; 5,000 connect, close"
    counted="conn_opened +$(d conn_opened_total), conn_closed +$(d conn_closed_total), frame_login +$(d frame_login_total), login replies +$(d frame_login_reply_total), bad_frames +$(d bad_frames_total), login_timeouts +$(d login_timeouts_total)"
    expect "the peer logged in 5000 times" "$(kv "$TOOL_LINE" logged_in)" -eq 5000
    expect "conn_opened +10000" "$(d conn_opened_total)" -eq 10000
    expect "conn_closed +10000" "$(d conn_closed_total)" -eq 10000
    expect "frame_login +5000" "$(d frame_login_total)" -eq 5000
    expect "login replies +5000" "$(d frame_login_reply_total)" -eq 5000
    expect "bad_frames +0" "$(d bad_frames_total)" -eq 0
    expect "users online back to 1" "$(val "$AFTER" hongbao_users_online)" -eq 1
    check_rss "$RSS0" "$PEAK" "$RSS1"
    stop_server
    end_row
}

MON_PID="" MON_PORT="" MON_HTTP="" MON_LOG=""
start_monitor() { # NAME LISTEN_PORT [hb-monitor args...]
    MON_LOG=$work/$1.monitor.log
    local port=$2
    shift 2
    start_bg MON_PID "$MON_LOG" "$bin/hb-monitor" --listen "127.0.0.1:$port" --http 127.0.0.1:0 \
        --grace-ms 2000 "$@"
    if ! wait_for_line "$MON_LOG" 'dashboard on http' $WAIT_S "$MON_PID_LAUNCH"; then
        expect "hb-monitor started (log: $MON_LOG)" 1 -eq 0
        cat "$MON_LOG" >&2
        stop_pid "$MON_PID" "$MON_PID_LAUNCH" 5
        return 1
    fi
    MON_PORT=$(sed -n 's/.*reports on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$MON_LOG")
    MON_HTTP=$(sed -n 's/.*dashboard on http:\/\/127\.0\.0\.1:\([0-9]*\)\/.*/\1/p' "$MON_LOG")
    echo "hb-monitor pid $MON_PID: reports on $MON_PORT, http on $MON_HTTP"
}
stop_monitor() {
    local rc
    stop_pid "$MON_PID" "$MON_PID_LAUNCH" $STOP_S
    rc=$STOP_RC
    expect "hb-monitor exits 0 on SIGTERM (status $rc; log: $MON_LOG)" "$rc" -eq 0
}
last_server_second() { awk '$2 == "server" && $3 ~ /^\[/ { s = $1 } END { print s + 0 }' "$MON_LOG"; }
wait_server_second() { # SECOND TIMEOUT_S: until the monitor shows a server second >= SECOND
    local end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
        [ "$(last_server_second)" -ge "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

fault_monitor_garbage() {
    begin "3. garbage to the monitor"
    start_monitor f3 0 || { end_row; return; }
    start_server f3 --monitor "127.0.0.1:$MON_PORT" || { stop_monitor; end_row; return; }
    start_good f3
    if ! wait_server_second 1 $WAIT_S; then
        expect "the monitor shows the server's seconds" 1 -eq 0
    fi
    local m0 m1 rss0 rss1 peak s0 n=5
    m0=$(http_get "$MON_HTTP" /metrics)
    rss0=$(rss "$MON_PID")
    s0=$(date +%s)
    run_tool f3 mon-garbage --server "127.0.0.1:$MON_PORT" --count $n --seed 7
    # The server's seconds keep coming: one ending at least 2 s after the garbage.
    wait_server_second $((s0 + 2)) $WAIT_S ||
        expect "the monitor still shows the server's seconds after the garbage" 1 -eq 0
    m1=$(http_get "$MON_HTTP" /metrics)
    rss1=$(rss "$MON_PID")
    peak=$(hwm "$MON_PID")
    stop_good
    local bad trunc reporters lost first last lines
    first=$(awk '$2 == "server" && $3 ~ /^\[/ { print $1; exit }' "$MON_LOG")
    last=$(last_server_second)
    lines=$(awk '$2 == "server" && $3 ~ /^\[/' "$MON_LOG" | sort -u | wc -l)
    bad=$(($(val "$m1" hongbao_monitor_bad_reports_total) - $(val "$m0" hongbao_monitor_bad_reports_total)))
    trunc=$(($(val "$m1" hongbao_monitor_truncated_reports_total) - $(val "$m0" hongbao_monitor_truncated_reports_total)))
    reporters=$(val "$m1" hongbao_monitor_reporters)
    lost=$(grep -c 'connection lost\|unreachable' "$SRV_LOG")
    done_what="hb-monitor with hb-server reporting to it; $n connections each: 1,952 random bytes, a well-formed report of type 7, half a report (488 bytes) then close"
    counted="monitor: bad_reports +$bad, truncated_reports +$trunc, reporters $reporters after; server seconds shown up to $(last_server_second) (garbage at $s0); server reporter disconnects $lost"
    served+="; the monitor printed the server's seconds $first..$last, $lines lines"
    expect "the monitor printed every second of the server, no gap" "$lines" -eq $((last - first + 1))
    expect "the peer saw the monitor close every garbage connection" "$(kv "$TOOL_LINE" closed_by_monitor)" -eq $((2 * n))
    expect "monitor bad_reports +$((2 * n))" "$bad" -eq $((2 * n))
    expect "monitor truncated_reports +$n" "$trunc" -eq "$n"
    expect "the monitor keeps exactly the server's connection" "$reporters" -eq 1
    expect "the server's reporter was never disconnected" "$lost" -eq 0
    expect "one log line per garbage connection" "$(grep -c 'closed: bad report\|in the middle of a report' "$MON_LOG")" -eq $((3 * n))
    check_rss "$rss0" "$peak" "$rss1"
    mem="$mem (monitor)"
    stop_server
    stop_monitor
    end_row
}

fault_monitor_down() {
    begin "4. monitor down"
    local port rss0 rss1 peak
    port=$("$tool" freeport)
    start_server f4 --monitor "127.0.0.1:$port" || { end_row; return; }
    start_good f4
    baseline
    wait_for_line "$SRV_LOG" 'unreachable' 10 ||
        expect "the server logs that the monitor is unreachable" 1 -eq 0
    # Three more seconds down: the server keeps serving and does not log again.
    local shakes0
    shakes0=$(val "$(server_metrics)" hongbao_frame_shake_total)
    sleep 3
    local down_lines
    down_lines=$(grep -c 'unreachable' "$SRV_LOG")
    expect "one log line while the monitor is down ($down_lines)" "$down_lines" -eq 1
    expect "the server serves while the monitor is down" \
        "$(val "$(server_metrics)" hongbao_frame_shake_total)" -ge $((shakes0 + 20))
    start_monitor f4 "$port" || { stop_good; stop_server; end_row; return; }
    local t0 t1 t2 s0
    t0=$(date +%s%N)
    s0=$(date +%s)
    wait_for_line "$SRV_LOG" "monitor 127\.0\.0\.1:$port connected" 15 ||
        expect "the server logs that it connected to the monitor" 1 -eq 0
    t1=$(date +%s%N)
    wait_server_second 1 $WAIT_S || expect "the monitor receives the server's reports" 1 -eq 0
    t2=$(date +%s%N)
    settle 1
    stop_good
    local connected_lines
    connected_lines=$(grep -c 'connected' "$SRV_LOG")
    done_what="hb-server with --monitor on a closed port, served for about 4 s, then hb-monitor started on that port"
    counted="server log: $down_lines 'unreachable' line, then 'connected' after $(((t1 - t0) / 1000000)) ms; monitor's first server second after $(((t2 - t0) / 1000000)) ms (second $(last_server_second), monitor up at $s0)"
    expect "one 'connected' line" "$connected_lines" -eq 1
    check_rss "$RSS0" "$PEAK" "$RSS1"
    stop_server
    stop_monitor
    end_row
}

fault_slow_peer() {
    begin "5a. peer that never reads"
    start_server f5a --max-conn-qps 0 || { end_row; return; }
    start_good f5a
    baseline
    run_tool f5a noread --server "127.0.0.1:$SRV_PORT" --count 4 --parallel 4 --shakes 1000000 \
        --user 2000
    wait_metric slow_peers_total -ge 4 $WAIT_S
    settle 1
    stop_good
    local sent
    sent=$(kv "$TOOL_LINE" sent)
    done_what="--max-conn-qps 0 (no rate limit); 4 peers logged in, wrote shakes in 64 KiB writes with a 4 KiB receive buffer and never read, until the server cut them off (at most 1,000,000 each): $sent shakes written in all"
    counted="slow_peers +$(d slow_peers_total), rate_limited +$(d rate_limited_total), shakes answered +$(d frame_shake_reply_total), conn_closed +$(d conn_closed_total)"
    expect "the server disconnected all 4 peers" "$(kv "$TOOL_LINE" disconnected)" -eq 4
    expect "slow_peers +4" "$(d slow_peers_total)" -eq 4
    expect "rate_limited +0 (no limit)" "$(d rate_limited_total)" -eq 0
    check_rss "$RSS0" "$PEAK" "$RSS1" "$PEAK_SLOW_KB"
    stop_server
    end_row
}

fault_rate_limit() {
    begin "5b. per-connection rate limit"
    start_server f5b || { end_row; return; }
    start_good f5b
    baseline
    run_tool f5b flood --server "127.0.0.1:$SRV_PORT" --count 4 --parallel 4 --shakes 5000 \
        --user 2000
    wait_metric rate_limited_total -ge 4004 $WAIT_S
    settle 1
    stop_good
    done_what="default --max-conn-qps (1,000/s); 4 peers logged in and sent 5,000 shakes each in one burst, reading the replies"
    counted="rate_limited +$(d rate_limited_total), slow_peers +$(d slow_peers_total), peers' replies $(kv "$TOOL_LINE" replies) of which overload (17) $(kv "$TOOL_LINE" overload), all 4 disconnected: $(kv "$TOOL_LINE" disconnected)"
    expect "the server disconnected all 4 peers" "$(kv "$TOOL_LINE" disconnected)" -eq 4
    expect "rate_limited >= 4 x 1001" "$(d rate_limited_total)" -ge 4004
    expect "slow_peers +0" "$(d slow_peers_total)" -eq 0
    expect "the peers read overload replies" "$(kv "$TOOL_LINE" overload)" -gt 0
    check_rss "$RSS0" "$PEAK" "$RSS1"
    stop_server
    end_row
}

fault_slowloris() {
    begin "6. slowloris"
    start_server f6 --login-timeout 2000 || { end_row; return; }
    start_good f6
    baseline
    run_tool f6 slowloris --server "127.0.0.1:$SRV_PORT" --count 500 --interval-ms 500
    wait_metric login_timeouts_total -ge 500 $WAIT_S
    settle 1
    stop_good
    local lo hi
    lo=$(kv "$TOOL_LINE" close_after_ms_min)
    hi=$(kv "$TOOL_LINE" close_after_ms_max)
    done_what="--login-timeout 2000; 500 connections each sending one byte of a login every 500 ms"
    counted="login_timeouts +$(d login_timeouts_total), conn_closed +$(d conn_closed_total); closed $(kv "$TOOL_LINE" closed_by_server) of 500 after $lo..$hi ms (avg $(kv "$TOOL_LINE" close_after_ms_avg)), $(kv "$TOOL_LINE" bytes_sent_each) bytes sent each"
    expect "all 500 closed by the server" "$(kv "$TOOL_LINE" closed_by_server)" -eq 500
    expect "login_timeouts +500" "$(d login_timeouts_total)" -eq 500
    expect "none closed before the 2000 ms deadline (min $lo ms)" "${lo:-0}" -ge 1900
    expect "all closed within the deadline + the 1 s check period + 1.5 s (max $hi ms)" "${hi:-99999}" -le 4500
    check_rss "$RSS0" "$PEAK" "$RSS1"
    stop_server
    end_row
}

fault_conn_flood() {
    begin "7. connections past the maximum"
    start_server f7 --nofile 400 || { end_row; return; }
    start_good f7
    baseline
    run_tool f7 hold --server "127.0.0.1:$SRV_PORT" --count 1000 --hold-ms 1000 --user 2000
    settle 1
    stop_good
    local acc ref
    acc=$(kv "$TOOL_LINE" accepted)
    ref=$(kv "$TOOL_LINE" refused)
    done_what="hb-server under ulimit -n 400 (it prints: up to $MAXCONN connections); 1,000 connections opened at once, each logging in, held 1 s, closed"
    counted="conn_rejected +$(d conn_rejected_total), conn_opened +$(d conn_opened_total), conn_closed +$(d conn_closed_total); peer: $acc logged in, $ref refused (closed at once), $(kv "$TOOL_LINE" undecided) undecided"
    expect "the server's maximum comes from the open-file limit (400 - 64 - 2 threads)" "${MAXCONN:-0}" -eq 334
    expect "logged in: the maximum less the well-behaved user" "${acc:-0}" -eq $((${MAXCONN:-0} - 1))
    expect "refused: the rest" "${ref:-0}" -eq $((1000 - ${acc:-0}))
    expect "conn_rejected counts every refused one" "$(d conn_rejected_total)" -eq "${ref:-0}"
    expect "conn_closed +1000" "$(d conn_closed_total)" -eq 1000
    check_rss "$RSS0" "$PEAK" "$RSS1"
    stop_server
    end_row
}

fault_bad_frames() {
    begin "9. malformed frames (extra)"
    start_server f9 || { end_row; return; }
    start_good f9
    baseline
    run_tool f9 badframe --server "127.0.0.1:$SRV_PORT" --count 500 --parallel 8
    wait_metric bad_frames_total -ge 500 $WAIT_S
    settle 1
    stop_good
    done_what="500 connections, 100 of each: length 5, length 32767, unknown cmd 0x0ABC, a shake before login, a login reply sent by a logged-in client"
    counted="bad_frames +$(d bad_frames_total), conn_closed +$(d conn_closed_total); peer: $(kv "$TOOL_LINE" closed_by_server) closed by the server"
    expect "all 500 closed by the server" "$(kv "$TOOL_LINE" closed_by_server)" -eq 500
    expect "bad_frames +500" "$(d bad_frames_total)" -eq 500
    check_rss "$RSS0" "$PEAK" "$RSS1"
    stop_server
    end_row
}

VALGRIND=""
fault_valgrind() {
    begin "8. whole scenario under valgrind"
    if [ -n "$sanitize" ]; then
        done_what="-" counted="-" served="-" mem="-"
        end_row SKIP "a sanitizer build ($sanitize): valgrind needs the uninstrumented build"
        return
    fi
    if [ ! -x /usr/bin/valgrind.bin ] && ! command -v valgrind >/dev/null 2>&1; then
        "$root/.ci/deps.sh" valgrind >/dev/null 2>&1 || true
    fi
    # Debian's /usr/bin/valgrind is a shell wrapper around valgrind.bin: run the real one.
    if [ -x /usr/bin/valgrind.bin ]; then
        VALGRIND=/usr/bin/valgrind.bin
    else
        VALGRIND=$(command -v valgrind || true)
    fi
    if [ -z "$VALGRIND" ]; then
        done_what="-" counted="-" served="-" mem="-"
        end_row SKIP "valgrind is not installed and could not be (apt-get install valgrind)"
        return
    fi
    # Valgrind 3.19 cannot read clang 14's DWARF 5 debug information and gives up at once.
    if ! "$VALGRIND" --tool=none --log-file="$work/f8.probe.log" "$bin/hb-server" --version \
        >/dev/null 2>&1 && grep -q 'debuginfo reader' "$work/f8.probe.log"; then
        done_what="-" counted="-" served="-" mem="-"
        end_row SKIP "this valgrind cannot read the binary's debug information (clang's DWARF 5 needs valgrind >= 3.20; see f8.probe.log): the gcc build runs it"
        return
    fi
    start_server f8 --valgrind --login-timeout 2000 || { end_row; return; }
    local clog=$work/f8.client.log cpid="" cpid_LAUNCH="" vlog=$work/f8.valgrind.log
    start_bg cpid "$clog" "$bin/hb-client" --server "127.0.0.1:$SRV_PORT" --min 0 --max 19 \
        --total 20 --qps 40 --duration 10 --control off
    local cpid_launch=$cpid_LAUNCH
    wait_metric users_online -ge 20 30 || expect "hb-client's 20 users log in" 1 -eq 0
    http_get "$CTL_PORT" "/yaohongbao?qps=20&sum=100" >/dev/null ||
        expect "GET /yaohongbao answers 200" 1 -eq 0
    http_get "$CTL_PORT" "/fahongbao?qps=5&sum=10&min=0&max=19" >/dev/null ||
        expect "GET /fahongbao answers 200" 1 -eq 0
    BEFORE=$(server_metrics)
    local p="127.0.0.1:$SRV_PORT" out=""
    run_tool f8 midframe --server "$p" --count 40 --user 3000
    out+="midframe 40: $(kv "$TOOL_LINE" "done") done; "
    run_tool f8 cycle --server "$p" --count 200 --user 4000
    out+="cycles 200: $(kv "$TOOL_LINE" "done") done; "
    run_tool f8 badframe --server "$p" --count 10 --user 5000
    out+="bad frames 10: $(kv "$TOOL_LINE" closed_by_server) closed; "
    run_tool f8 flood --server "$p" --count 1 --shakes 5000 --user 6000
    out+="flood 5,000: disconnected $(kv "$TOOL_LINE" disconnected); "
    run_tool f8 noread --server "$p" --count 1 --shakes 20000 --user 7000
    out+="no-read 20,000: disconnected $(kv "$TOOL_LINE" disconnected); "
    run_tool f8 slowloris --server "$p" --count 10 --interval-ms 500 --user 8000
    out+="slowloris 10: $(kv "$TOOL_LINE" closed_by_server) closed"
    wait_metric login_timeouts_total -ge 10 $WAIT_S
    local stats
    stats=$(http_get "$CTL_PORT" /stats) || expect "GET /stats answers 200" 1 -eq 0
    AFTER=$(server_metrics)
    expect "GET /metrics answers with the counters" -n "$(val "$AFTER" hongbao_conn_opened_total)"
    expect "GET /stats answers with users_online" -n "$(grep -o '"users_online":[0-9]*' <<<"$stats")"
    # hb-client ends by itself after 10 s.
    local crc=124 end=$((SECONDS + 20))
    while [ $SECONDS -lt $end ] && kill -0 "$cpid_launch" 2>/dev/null; do
        sleep 0.05
    done
    if kill -0 "$cpid_launch" 2>/dev/null; then
        stop_pid "$cpid" "$cpid_launch" 10
        crc=$STOP_RC
    else
        wait "$cpid_launch"
        crc=$?
        unset "marker[$cpid]" "marker[$cpid_launch]"
    fi
    local sum shakes answered
    sum=$(grep '^summary:' "$clog")
    echo "$sum"
    shakes=$(kv "$sum" shakes)
    answered=$(($(kv "$sum" got) + $(kv "$sum" none) + $(kv "$sum" overload)))
    expect "hb-client exits 0 (status $crc; $clog)" "$crc" -eq 0
    expect "hb-client: 20 users connected" "$(kv "$sum" connected)" -eq 20
    expect "hb-client: shakes answered ($answered of $shakes; at most 8 a user in flight at the end)" "$answered" -ge $((${shakes:-0} - 160))
    expect "hb-client: shake envelopes received" "$(kv "$sum" envelopes)" -gt 0
    expect "hb-client: send-envelope claims granted" "$(kv "$sum" granted)" -gt 0
    expect "bad_frames +10" "$(d bad_frames_total)" -eq 10
    expect "login_timeouts +10" "$(d login_timeouts_total)" -ge 10
    expect "rate_limited: both flooders" "$(d rate_limited_total)" -ge 2002
    local rc
    stop_pid "$SRV_PID" "$SRV_PID_LAUNCH" 60
    rc=$STOP_RC
    local errs leaks
    errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$vlog" | tail -n 1)
    if grep -q 'All heap blocks were freed' "$vlog"; then
        leaks="all heap blocks freed"
    else
        leaks=$(grep -E 'definitely lost|indirectly lost|possibly lost|still reachable' "$vlog" |
            sed 's/^==[0-9]*== *//' | tr '\n' ';')
    fi
    done_what="hb-server under valgrind --leak-check=full --error-exitcode=9; hb-client 20 users at 40 shakes/s for 10 s; 100 shake envelopes and 10 send-envelopes generated; GET /metrics and /stats; $out; then SIGTERM"
    counted="exit status $rc; valgrind: ${errs:-?} errors, $leaks; bad_frames +$(d bad_frames_total), login_timeouts +$(d login_timeouts_total), rate_limited +$(d rate_limited_total)"
    served="hb-client: $(kv "$sum" connected) users, $shakes shakes, $answered answered, $(kv "$sum" envelopes) envelopes, $(kv "$sum" granted) claims granted, p99 $(kv "$sum" p99_us) us"
    mem="n/a (valgrind)"
    expect "hb-server under valgrind exits 0 (status $rc; $vlog)" "$rc" -eq 0
    expect "valgrind: 0 errors" "${errs:-1}" -eq 0
    expect "valgrind: no leak" -z "$(grep -E '(definitely|indirectly|possibly) lost: [1-9]' "$vlog")"
    end_row
}

# ---- SIGPIPE: peers that leave without reading what they asked for ----
# Before the library wrote through hb_sock (send with MSG_NOSIGNAL), a write to such a peer could
# raise SIGPIPE and end the process at once (signal 13: exit status 141 when stopped). Each
# scenario: at least 3,000 connections, each pipelining requests in one write and leaving without
# reading, half of them closing (FIN: the process's later writes meet a closed socket), half
# resetting (SO_LINGER 0).

# sigpipe_http NAME PORT TOKEN COUNT PATH PID: COUNT peers to the HTTP port PORT (requests without
# a token: with TOKEN set on the server they are answered 401), then the checks: PID alive, the
# HTTP port still serving, every dropped connection closed and counted.
sigpipe_http() {
    local name=$1 port=$2 token=$3 count=$4 path=$5 pid=$6 a0 r0 u0 a1 r1 u1 d0 d1
    d0=$(listen_drops)
    a0=$(http_stat "$port" "$token" connections_accepted)
    r0=$(http_stat "$port" "$token" connections_rejected)
    u0=$(http_stat "$port" "$token" unauthorized)
    run_tool "$name" http-gone --server "127.0.0.1:$port" --count "$count" --parallel 16 \
        --pipeline 5 --path "$path"
    wait_http_open "$port" "$token" $WAIT_S || expect "every dropped connection closed (port $port)" 1 -eq 0
    expect "alive after $count peers left without reading (port $port)" -n "$(own "$pid" && echo y)"
    http_get "$port" "$path" "$token" >/dev/null || expect "GET $path still answered 200 (port $port)" 1 -eq 0
    a1=$(http_stat "$port" "$token" connections_accepted)
    r1=$(http_stat "$port" "$token" connections_rejected)
    u1=$(http_stat "$port" "$token" unauthorized)
    d1=$(listen_drops)
    expect "the peer made every connection (port $port)" "$(kv "$TOOL_LINE" done)" -eq "$count"
    expect "connections counted: accepted + rejected + dropped by the kernel's full listen queue >= $count (port $port)" \
        $((${a1:-0} + ${r1:-0} - ${a0:-0} - ${r0:-0} + ${d1:-0} - ${d0:-0})) -ge "$count"
    if [ -n "$token" ]; then
        expect "unauthenticated requests answered 401 (port $port)" $((${u1:-0} - ${u0:-0})) -gt 0
    fi
    counted+="$name: $count peers, accepted +$((${a1:-0} - ${a0:-0})), rejected +$((${r1:-0} - ${r0:-0})), dropped by the kernel +$((${d1:-0} - ${d0:-0})), 401 +$((${u1:-0} - ${u0:-0})), open back to 1; "
}

fault_sigpipe_control() {
    begin "10. SIGPIPE: control port"
    counted="" served=""
    start_server f10 || { end_row; return; }
    start_good f10
    sigpipe_http f10 "$CTL_PORT" "" 2000 /stats "$SRV_PID"
    stop_good
    stop_server
    CTL_TOKEN=f10secret
    start_server f10t --control-token "$CTL_TOKEN" || { CTL_TOKEN=""; end_row; return; }
    start_good f10t
    sigpipe_http f10t "$CTL_PORT" "$CTL_TOKEN" 1000 /stats "$SRV_PID"
    stop_good
    stop_server
    CTL_TOKEN=""
    done_what="hb-server; 2,000 connections to the control port, each pipelining 5 GET /stats and leaving without reading (half close, half reset), 16 at a time; then a server with --control-token and 1,000 more, unauthenticated (401)"
    served+=" (and GET /stats after each)"
    mem="-"
    end_row
}

fault_sigpipe_monitor() {
    begin "11. SIGPIPE: monitor's HTTP port"
    counted="" served=""
    start_monitor f11 0 || { end_row; return; }
    sigpipe_http f11 "$MON_HTTP" "" 2000 /metrics "$MON_PID"
    stop_monitor
    start_monitor f11t 0 --http-token f11secret || { end_row; return; }
    sigpipe_http f11t "$MON_HTTP" f11secret 1000 /metrics "$MON_PID"
    stop_monitor
    done_what="hb-monitor; 2,000 connections to its HTTP port, each pipelining 5 GET /metrics and leaving without reading (half close, half reset), 16 at a time; then a monitor with --http-token and 1,000 more, unauthenticated (401)"
    served="GET /metrics after each"
    mem="-"
    end_row
}

# sigpipe_users NAME [hb-server args...]: 3,000 logged-in peers pipelining shakes and claims.
sigpipe_users() {
    local name=$1
    shift
    start_server "$name" "$@" || return
    start_good "$name"
    baseline
    # 20 claims each, answered by other SETs while the connection is going: the writes that used
    # to meet the closed socket and, before hb_sock, raise SIGPIPE.
    run_tool "$name" user-gone --server "127.0.0.1:$SRV_PORT" --count 3000 --parallel 32 \
        --pipeline 20 --user 20000
    wait_metric conn_closed_total -ge $(($(val "$BEFORE" hongbao_conn_closed_total) + 3000)) $WAIT_S
    expect "hb-server $* alive after 3,000 peers left without reading" -n "$(own "$SRV_PID" && echo y)"
    settle 1
    stop_good
    expect "hb-server $*: the peer made every connection" "$(kv "$TOOL_LINE" done)" -eq 3000
    expect "hb-server $*: conn_closed +3000" "$(d conn_closed_total)" -eq 3000
    expect "hb-server $*: claims seen" "$(d frame_claim_total)" -gt 0
    counted+="${*:-defaults}: conn_opened +$(d conn_opened_total), conn_closed +$(d conn_closed_total), frame_shake +$(d frame_shake_total), frame_claim +$(d frame_claim_total); "
    stop_server
}

fault_sigpipe_users() {
    begin "12. SIGPIPE: user port"
    counted="" served=""
    sigpipe_users f12
    local s1=$served
    sigpipe_users f12n --ledger off
    served="$s1; --ledger off: $served"
    done_what="hb-server with default options, then with --ledger off; each: 3,000 connections, each sending a login, 20 shakes and 20 claims (of unknown envelopes, answered by the SET that owns them) in one write and leaving without reading (half close, half reset), 32 at a time"
    mem="-"
    end_row
}

# ---- run them all ----

t_start=$SECONDS
# HB_FAULTS="fault_sigpipe_users ..." runs only those (while working on one).
all_faults="fault_midframe fault_cycles fault_monitor_garbage fault_monitor_down fault_slow_peer
    fault_rate_limit fault_slowloris fault_conn_flood fault_valgrind fault_bad_frames
    fault_sigpipe_control fault_sigpipe_monitor fault_sigpipe_users"
for f in ${HB_FAULTS:-$all_faults}; do
    if [ $((SECONDS - t_start)) -ge $BUDGET_S ]; then
        begin "$f"
        expect "not run: the time budget of ${BUDGET_S} s was spent (a hung program?)" 1 -eq 0
        end_row
        continue
    fi
    "$f"
done
elapsed=$((SECONDS - t_start))

{
    echo "# Fault tests: results"
    echo
    echo "Produced by \`tests/faults/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores,"
    echo "build \`$(basename "$build")\` ($(basename "${compiler:-cc}") ${build_type:-?}, sanitizer: ${sanitize:-none}), in ${elapsed} s."
    echo "Each fault ran against a freshly started hb-server (loopback, free ports, 2 worker threads)"
    echo "while a well-behaved user (\`faults_misbehave good\`) logged in and shook every 50 ms, each"
    echo "reply required within ${BOUND_MS} ms. Counters are the server's own (/metrics), as deltas over"
    echo "the fault. RSS is the server's VmRSS before the fault, its VmHWM (peak) and VmRSS after"
    echo "(kB); tolerance: after <= before + max(${RSS_SLACK_KB} kB, 25 %)."
    echo
    echo "| fault | what was done | outcome (counted) | well-behaved client | RSS before / peak / after (kB) | result |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    if [ ${#failures[@]} -gt 0 ]; then
        echo
        echo "Failed expectations:"
        printf -- '- %s\n' "${failures[@]}"
    fi
} >"$results"

echo
cat "$results"
if [ ${#failures[@]} -gt 0 ]; then
    echo >&2
    echo "faults: ${#failures[@]} expectation(s) failed (logs in $work):" >&2
    printf '  %s\n' "${failures[@]}" >&2
    exit 1
fi
echo
echo "faults: every expectation held (${elapsed} s; table in $results)"
