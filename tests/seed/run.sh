#!/usr/bin/env bash
# examples/seed/run.sh kept working (CTest seed_example): the seed's three phases at a tiny scale
# with the build's tools, then the same run interrupted, and the same run losing its server.
#   run        2,000 users, 500 then 1,000 shakes/s, 4 s a phase: exits 0; the monitor's CSV has
#              servers' and clients' seconds; the phase table has the three phases, every user
#              connected in the first, each rate phase at its rate (within 10 %: the rate was set
#              through the client's control endpoint), envelopes generated and handed out, packets
#              counted; the series and, with gnuplot, a PNG figure; nothing left running.
#   interrupt  SIGTERM to the script during a rate phase: it exits 143 and stops everything.
#   server     hb-server killed during a rate phase: the script says so, exits 1, stops the rest.
# Usage: tests/seed/run.sh BUILD_DIR WORKDIR      (loopback only; every PID checked at the end)
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR WORKDIR" >&2; exit 2; }
build=$1
work=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
script="$root/examples/seed/run.sh"
bin="$build/examples"
rm -rf "$work"
mkdir -p "$work"
if ! command -v curl >/dev/null; then
    [ "${HB_TEST:-}" = 1 ] && { echo "FAIL: curl is missing: tests/run.sh installs it (.ci/deps.sh)" >&2; exit 1; }
    echo "SKIP: curl is not installed (examples/seed/run.sh walks the phases with it)"
    exit 77
fi

script_args=(--bin "$bin")
bg_limit=120
. "$root/tests/example_harness.sh"

# ---- run: the three phases, small ----------------------------------------------------------------
users=2000 r1=500 r2=1000
start_bg run --users $users --rates $r1,$r2 --phase 4 --envelopes 100 --sends 10
finish
[ "$rc" -eq 0 ] || fail "run: the script exited with status $rc"
out="$work/run"
none_alive "$out" "$out/server.pid"
csv="$out/monitor.csv"
[ "$(grep -c ',server,' "$csv")" -ge 8 ] || fail "run: fewer than 8 server seconds in $csv"
[ "$(grep -c ',client,' "$csv")" -ge 8 ] || fail "run: fewer than 8 client seconds in $csv"
[ "$(wc -l <"$out/phases.txt")" -eq 4 ] || fail "run: phases.txt is not a header and 3 phases"
# name start end seconds client_shakes_ps server_shakes_ps server_rps nic_rx_pps nic_tx_pps
# conn_opened envelopes_generated envelopes_handed_out send_created claims_granted connections
check_phase() { # LINE NAME TARGET: one rate phase of phases.txt
    local name start end secs cshk sshk srps rx tx opened gen handed sent claims conn
    read -r name start end secs cshk sshk srps rx tx opened gen handed sent claims conn <<<"$1"
    [ "$name" = "$2" ] || fail "run: phase '$name' where '$2' was expected"
    [ "$secs" -eq 4 ] || fail "run: $name lasted $secs s, not 4"
    [ "$cshk" != - ] && [ "$((cshk * 10))" -ge "$(($3 * 9))" ] && [ "$((cshk * 10))" -le "$(($3 * 11))" ] ||
        fail "run: $name: the clients sent $cshk shakes/s, not $3 (within 10 %)"
    [ "$sshk" != - ] && [ "$((sshk * 10))" -ge "$(($3 * 9))" ] ||
        fail "run: $name: the servers saw $sshk shakes/s of $3"
    [ "$gen" -gt 0 ] && [ "$handed" -gt 0 ] || fail "run: $name: envelopes generated $gen, handed out $handed"
    [ "$rx" != - ] && [ "$rx" -gt 0 ] && [ "$tx" -gt 0 ] || fail "run: $name: packets/s $rx/$tx"
    [ "$conn" = "$users" ] || fail "run: $name: $conn connections open, not $users"
}
connect=$(sed -n 2p "$out/phases.txt")
[ "$(awk '{ print $1, $15 }' <<<"$connect")" = "connect $users" ] ||
    fail "run: the connect phase ends with '$(awk '{ print $15 }' <<<"$connect")' connections, not $users"
check_phase "$(sed -n 3p "$out/phases.txt")" rate1 $r1
check_phase "$(sed -n 4p "$out/phases.txt")" rate2 $r2
[ "$(wc -l <"$out/table.txt")" -eq 4 ] || fail "run: the printed table is not a header and 3 phases"
[ -s "$out/seed.dat" ] || fail "run: no per-second series"
if command -v gnuplot >/dev/null; then
    [ "$(head -c 4 "$out/seed.png" | od -An -tx1 | tr -d ' ')" = 89504e47 ] || fail "run: seed.png is not a PNG"
else
    grep -q 'gnuplot is not installed' "$work/run.out" || fail "run: no figure and no word why"
fi
echo "run: $(sed -n 3,4p "$out/table.txt" | tr -s ' ' | paste -sd';')"

# ---- interrupt: SIGTERM during rate 1 ------------------------------------------------------------
start_bg interrupt --users $users --rates $r1,$r2 --phase 30
wait_printed interrupt "phase 2" 60
kill -TERM "$bg_pid"
finish
[ "$rc" -eq 143 ] || fail "interrupt: the script exited with status $rc, not 143"
grep -q 'seed: terminated' "$work/interrupt.out" || fail "interrupt: the script did not say it was stopped"
none_alive "$work/interrupt" "$work/interrupt/server.pid"
echo "interrupt: exit 143, every process stopped"

# ---- server: hb-server killed during rate 1 ------------------------------------------------------
start_bg server --users $users --rates $r1,$r2 --phase 30
wait_printed server "phase 2" 60
tpid=$(awk '$1 == "server" { print $2 }' "$work/server/pids")
spid=$(cat "/proc/$tpid/task/$tpid/children" 2>/dev/null | awk '{ print $1 }')
[ -n "$spid" ] || fail "server: no hb-server under timeout (pid $tpid)"
echo "hb-server $spid" >"$work/server/server.pid"
kill -KILL "$spid"
finish
[ "$rc" -eq 1 ] || fail "server: the script exited with status $rc, not 1"
grep -q 'seed: server (pid [0-9]*) ended unexpectedly' "$work/server.out" ||
    fail "server: the script did not name the server that ended"
none_alive "$work/server" "$work/server/server.pid"
echo "server: exit 1 naming the server, every process stopped"
echo "seed_example: the run, the interrupted run and the run that lost its server all behaved"
