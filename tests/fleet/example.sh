#!/usr/bin/env bash
# examples/fleet/run.sh kept working (CTest fleet_example), small, on a cluster of its own:
#   run        8 s, 600 users: exits 0; the audit balanced; every instance had users, requests,
#              envelopes handed out and claims granted; generated = handed out + queued + leased
#              + expired; the client got every user connected; nothing left running.
#   kill-one   the same with i3 SIGKILLed halfway: exits 0, balanced, i3's lease expired with
#              envelopes in it, its users failed over; nothing left running.
#   interrupt  SIGTERM to the script mid-run: exits 143, every process (Redis's too) stopped.
#   no-redis   --redis-server naming nothing: exits 3 naming redis-server, starts nothing.
#   no-hiredis an hb-server that says "built without hiredis": exits 3 saying so, the cluster
#              it had started stopped.
# Usage: tests/fleet/example.sh BUILD_DIR WORKDIR PORT_BASE   (the cluster's 6 ports from
# PORT_BASE, buses +10000; loopback only; every PID checked at the end)
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 BUILD_DIR WORKDIR PORT_BASE" >&2; exit 2; }
build=$(cd "$1" && pwd)
work=$2
base=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
script="$root/examples/fleet/run.sh"
bin="$build/examples"
rm -rf "$work"
mkdir -p "$work"

script_args=(--bin "$bin" --redis-port "$base")
bg_limit=200
. "$root/tests/example_harness.sh"

# audit DIR FIELD: a number of the shake budget's in DIR/audit.json.
audit() { sed 's/.*"shake":{//' "$1/audit.json" | grep -o "\"$2\":[0-9]*" | head -1 | cut -d: -f2; }
# summary DIR KEY: a figure of hb-client's summary line.
summary() { grep '^summary:' "$1/client.log" | grep -o " $2=[0-9]*" | cut -d= -f2; }

# check_books NAME: the audit balanced, its figures add up, the table printed it.
check_books() {
    local d="$work/$1" g h q l x
    grep -q '"balanced":true' "$d/audit.json" || fail "$1: the audit did not balance: $(cat "$d/audit.json")"
    grep -q 'audit: balanced$' "$work/$1.out" || fail "$1: the script did not print the verdict"
    g=$(audit "$d" generated) h=$(audit "$d" handed_out) q=$(audit "$d" queued)
    l=$(audit "$d" leased) x=$(audit "$d" expired)
    [ "$g" -gt 0 ] && [ "$g" -eq $((h + q + l + x)) ] ||
        fail "$1: generated $g is not handed out $h + queued $q + leased $l + expired $x"
    [ "$l" -eq 0 ] || fail "$1: $l envelopes still leased after every instance stopped"
    grep -q "^fleet: generated $g = handed out $h + queued $q + leased $l + expired $x " \
        "$work/$1.out" || fail "$1: the printed fleet line is not the audit's"
    [ "$(summary "$d" connected)" = 600 ] || fail "$1: $(summary "$d" connected) users connected, not 600"
}

# row NAME INSTANCE: its table row's users, requests, handed out, claims.
row() { awk -v i="$2" '$1 == i { print $3, $4, $5, $6 }' "$work/$1/table.txt"; }

# ---- run -----------------------------------------------------------------------------------------
start_bg run --duration 8 --users 600
finish
[ "$rc" -eq 0 ] || fail "run: the script exited with status $rc"
none_alive "$work/run" "$work"/run/redis/*/*.pid
check_books run
for i in i1 i2 i3; do
    read -r u r h c <<<"$(row run $i)"
    [ "${u:-0}" -gt 0 ] && [ "${r:-0}" -gt 0 ] && [ "${h:-0}" -gt 0 ] && [ "${c:-0}" -gt 0 ] ||
        fail "run: $i's row is '$u $r $h $c' (users, requests, handed out, claims): not all above 0"
done
[ "$(audit "$work/run" expired)" -eq 0 ] || fail "run: envelopes expired although nothing died"
[ "$(summary "$work/run" failovers)" -eq 0 ] || fail "run: failovers although nothing died"
echo "run: $(grep '^fleet: generated' "$work/run.out")"

# ---- kill-one ------------------------------------------------------------------------------------
start_bg kill --duration 8 --users 600 --kill-one --lease 2000
finish
[ "$rc" -eq 0 ] || fail "kill-one: the script exited with status $rc"
none_alive "$work/kill" "$work"/kill/redis/*/*.pid
check_books kill
grep -q '^fleet: i3 (pid [0-9]*) SIGKILLed' "$work/kill.out" || fail "kill-one: i3 was not killed"
[ "$(audit "$work/kill" expired)" -gt 0 ] || fail "kill-one: nothing of i3's lease expired"
[ "$(summary "$work/kill" failovers)" -gt 0 ] || fail "kill-one: no user failed over"
# Every envelope a user got was handed out or held by the dead instance (expired).
got=$(summary "$work/kill" envelopes)
[ "$got" -le $(($(audit "$work/kill" handed_out) + $(audit "$work/kill" expired))) ] ||
    fail "kill-one: users got $got envelopes, more than handed out + expired"
for i in i1 i2 i3; do
    read -r u r h c <<<"$(row kill $i)"
    [ "${u:-0}" -gt 0 ] && [ "${h:-0}" -gt 0 ] || fail "kill-one: $i's row is '$u $r $h $c'"
done
echo "kill-one: $(grep '^fleet: generated' "$work/kill.out"); failovers $(summary "$work/kill" failovers)"

# ---- interrupt -----------------------------------------------------------------------------------
start_bg interrupt --duration 60 --users 600
wait_printed interrupt "shaking" 60
kill -TERM "$bg_pid"
finish
[ "$rc" -eq 143 ] || fail "interrupt: the script exited with status $rc, not 143"
grep -q 'fleet: terminated' "$work/interrupt.out" || fail "interrupt: the script did not say it was stopped"
none_alive "$work/interrupt" "$work"/interrupt/redis/*/*.pid
echo "interrupt: exit 143, every process stopped"

# ---- no-redis ------------------------------------------------------------------------------------
start_bg noredis --redis-server "$work/no-such-redis-server"
finish
[ "$rc" -eq 3 ] || fail "no-redis: the script exited with status $rc, not 3"
grep -q 'fleet: redis-server not found' "$work/noredis.out" || fail "no-redis: redis-server not named"
[ ! -e "$work/noredis/pids" ] || fail "no-redis: processes were started"
echo "no-redis: exit 3 naming redis-server, nothing started"

# ---- no-hiredis: an hb-server built without it (a stand-in saying what such a build says) -------
fake="$work/fake-bin"
mkdir -p "$fake"
for t in hb-client hb-monitor hb-audit; do ln -s "$bin/$t" "$fake/$t"; done
printf '#!/bin/sh\necho "hb-server: redis: this libhongbao was built without hiredis" >&2\nexit 1\n' \
    >"$fake/hb-server"
chmod +x "$fake/hb-server"
start_bg nohiredis --bin "$fake" --duration 4 # the last --bin counts
finish
[ "$rc" -eq 3 ] || fail "no-hiredis: the script exited with status $rc, not 3"
grep -q 'built without hiredis: rebuild with -DHONGBAO_REDIS=ON' "$work/nohiredis.out" ||
    fail "no-hiredis: the script did not say why"
none_alive "$work/nohiredis" "$work"/nohiredis/redis/*/*.pid
echo "no-hiredis: exit 3 saying so, the cluster stopped"
echo "fleet_example: the run, the run losing i3, the interrupted run and the missing pieces all behaved"
