#!/usr/bin/env bash
# Crash test of the claim journal, three scenarios, each on a journal of its own:
#  1. SIGKILL hb-server again and again in the middle of a claim storm (hb-client's users),
#     restarting it on the same journal each time;
#  2. a claim storm of careless claimants (tests/crash/claim_storm.c): after a claim, a third of
#     them close at once or log in again elsewhere, and ask again on the new connection;
#  3. the same storm, with SIGTERM in the middle of it and a restart.
# Checks: every claim a client saw acknowledged is in the journal, no (envelope, user) is
# granted twice, hb-audit finds the books balanced; and in 2 and 3, every grant in the journal
# reached its owner at least once (at the first try or a retry). Loopback only, bounded, cleans
# up what it started.
# Usage: tests/crash/run.sh BUILD_DIR [ROUNDS]      (default 5 rounds, about 60 s in all)
set -euo pipefail
build=$(cd "$1" && pwd)
rounds=${2:-5}
bin="$build/examples"
tool="$build/tests/journal_claims"
storm="$build/tests/claim_storm"
work=$(mktemp -d /tmp/hb-crash-XXXXXX)
users=1000
server_pid="" client_pid=""

cleanup() {
    [ -n "$client_pid" ] && kill -TERM "$client_pid" 2>/dev/null || true
    [ -n "${storm_pid:-}" ] && kill -TERM "$storm_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    [ -n "${HB_KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
http_get() { # port path
    exec 9<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&9
    sed '1,/^\r$/d' <&9
    exec 9<&-
}
port=$(free_port) ctl=$(free_port)

ledger="$work/ledger"
start_server() {
    "$bin/hb-server" --listen "127.0.0.1:$port" --control "127.0.0.1:$ctl" --threads 2 \
        --ledger "$ledger" --fsync always >>"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        http_get "$ctl" /stats >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "crash test: hb-server did not come up" >&2
    cat "$work/server.log" >&2
    exit 1
}
online() { { http_get "$ctl" /stats 2>/dev/null || true; } | grep -o '"users_online":[0-9]*' | cut -d: -f2 | grep . || echo 0; }

start_server
# The users: they claim every notice at once and log every claim reply; they reconnect by
# themselves whenever the server goes away.
"$bin/hb-client" --server "127.0.0.1:$port" --min 0 --max $((users - 1)) --total "$users" \
    --qps 100 --control off --claims-log "$work/claims" >"$work/client.log" 2>&1 &
client_pid=$!

kills=0
for round in $(seq "$rounds"); do
    for _ in $(seq 200); do
        [ "$(online)" -ge $((users * 9 / 10)) ] && break
        sleep 0.05
    done
    # A storm: 1,000 send-envelopes a second to the online users, 3,000 claims a second.
    http_get "$ctl" "/fahongbao?qps=1000&sum=1500&min=0&max=$((users - 1))" >/dev/null
    sleep "0.$((3 + RANDOM % 7))"
    kill -KILL "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    kills=$((kills + 1))
    start_server
done
# A last calm round: let the survivors of the storm finish, then stop everything cleanly.
for _ in $(seq 200); do
    [ "$(online)" -ge $((users * 9 / 10)) ] && break
    sleep 0.05
done
sleep 1
kill -TERM "$client_pid"
wait "$client_pid" || true
client_pid=""
kill -TERM "$server_pid"
wait "$server_pid" || { echo "crash test: the last hb-server did not stop cleanly" >&2; exit 1; }
server_pid=""

# What the clients saw acknowledged, and what the journal holds.
# A retry answered with the share granted before (result 1, a repeat) is the same grant again.
cat "$work"/claims.* | awk '$3 > 0 {print $1, $2, $3}' | sort -u >"$work/acked"
"$tool" "$work/ledger/journal" | sort >"$work/journaled"
acked=$(wc -l <"$work/acked")
journaled=$(wc -l <"$work/journaled")
dup_acked=$(awk '{print $1, $2}' "$work/acked" | uniq -d | wc -l) # one pair, two amounts
unlearned=$(comm -13 "$work/acked" "$work/journaled" | wc -l)
dup_journal=$(awk '{print $1, $2}' "$work/journaled" | sort | uniq -d | wc -l)
missing=$(comm -23 "$work/acked" "$work/journaled" | wc -l)
refused=$(cat "$work"/claims.* | awk '$3 == 0' | wc -l)
audit_rc=0
"$bin/hb-audit" "$work/ledger" >"$work/audit.log" 2>&1 || audit_rc=$?

printf '\n%-44s %s\n' "crash test (SIGKILL during a claim storm)" "result"
printf '%-44s %d\n' "server SIGKILLs (then restarted)" "$kills"
printf '%-44s %d\n' "claims acknowledged to clients (amount > 0)" "$acked"
printf '%-44s %d\n' "claims answered 0 (not granted)" "$refused"
printf '%-44s %d\n' "claims in the journal" "$journaled"
printf '%-44s %d\n' "acknowledged but missing from the journal" "$missing"
printf '%-44s %d\n' "journaled but never learned by the owner" "$unlearned"
printf '%-44s %d\n' "(envelope, user) granted twice: acknowledged" "$dup_acked"
printf '%-44s %d\n' "(envelope, user) granted twice: journal" "$dup_journal"
printf '%-44s %s\n' "hb-audit" "$([ $audit_rc -eq 0 ] && echo 'books balance' || echo "FAILED ($audit_rc)")"
sed 's/^/    /' "$work/audit.log"
grep -h 'torn\|truncat' "$work/server.log" | sort | uniq -c | sed 's/^/    server: /' || true

fail=0
[ "$acked" -gt 0 ] || { echo "crash test: no claim was acknowledged: the storm did not happen" >&2; fail=1; }
[ "$missing" -eq 0 ] || { echo "crash test: acknowledged claims missing from the journal:" >&2; comm -23 "$work/acked" "$work/journaled" | head >&2; fail=1; }
[ "$unlearned" -eq 0 ] || { echo "crash test: journaled grants their owners never learned:" >&2; comm -13 "$work/acked" "$work/journaled" | head >&2; fail=1; }
[ "$dup_acked" -eq 0 ] && [ "$dup_journal" -eq 0 ] || { echo "crash test: a claim was granted twice" >&2; fail=1; }
[ "$audit_rc" -eq 0 ] || { echo "crash test: hb-audit found violations" >&2; fail=1; }
[ "$fail" -eq 0 ] && echo "crash scenario 1 passed"

# ---- scenarios 2 and 3: careless claimants, then SIGTERM mid-storm ----

# check_both_ways NAME LOG: the grants the claimants learned against the journal in $ledger.
check_both_ways() {
    local name=$1 log=$2
    awk '{print $1, $2, $3}' "$log" | sort -u >"$work/$name.acked"
    "$tool" "$ledger/journal" | sort >"$work/$name.journaled"
    local acked journaled unacked missing dups arc=0
    acked=$(wc -l <"$work/$name.acked")
    journaled=$(wc -l <"$work/$name.journaled")
    unacked=$(comm -13 "$work/$name.acked" "$work/$name.journaled" | wc -l)
    missing=$(comm -23 "$work/$name.acked" "$work/$name.journaled" | wc -l)
    dups=$(awk '{print $1, $2}' "$work/$name.journaled" | uniq -d | wc -l)
    "$bin/hb-audit" "$ledger" >"$work/$name.audit" 2>&1 || arc=$?
    printf '\n%-50s %s\n' "crash scenario: $name" "result"
    printf '%-50s %d\n' "grants learned by their owners" "$acked"
    printf '%-50s %d\n' "grants in the journal" "$journaled"
    printf '%-50s %d\n' "journaled but never learned by the owner" "$unacked"
    printf '%-50s %d\n' "learned but missing from the journal" "$missing"
    printf '%-50s %d\n' "(envelope, user) granted twice" "$dups"
    printf '%-50s %s\n' "hb-audit" "$([ $arc -eq 0 ] && echo 'books balance' || echo "FAILED ($arc)")"
    [ "$journaled" -gt 0 ] || { echo "crash test: $name: no claim was granted" >&2; fail=1; }
    [ "$unacked" -eq 0 ] || { echo "crash test: $name: journaled grants never learned:" >&2; comm -13 "$work/$name.acked" "$work/$name.journaled" | head >&2; fail=1; }
    [ "$missing" -eq 0 ] || { echo "crash test: $name: learned grants not journaled" >&2; fail=1; }
    [ "$dups" -eq 0 ] || { echo "crash test: $name: a share granted twice" >&2; fail=1; }
    [ "$arc" -eq 0 ] || { echo "crash test: $name: hb-audit found violations" >&2; sed 's/^/    /' "$work/$name.audit" >&2; fail=1; }
}

storm_users=300
for scenario in careless sigterm; do
    ledger="$work/ledger-$scenario"
    port=$(free_port) ctl=$(free_port)
    start_server
    "$storm" --port "$port" --users "0-$((storm_users - 1))" --seconds 8 --chaos 0.33 --ext \
        --log "$work/$scenario.log" >"$work/$scenario.out" 2>&1 &
    storm_pid=$!
    for _ in $(seq 200); do
        [ "$(online)" -ge $((storm_users * 8 / 10)) ] && break
        sleep 0.05
    done
    http_get "$ctl" "/fahongbao?qps=500&sum=2500&min=0&max=$((storm_users - 1))" >/dev/null
    if [ "$scenario" = sigterm ]; then
        sleep "1.$((RANDOM % 9))"
        kill -TERM "$server_pid"
        wait "$server_pid" || { echo "crash test: hb-server did not stop cleanly on SIGTERM" >&2; fail=1; }
        start_server
        http_get "$ctl" "/fahongbao?qps=500&sum=500&min=0&max=$((storm_users - 1))" >/dev/null
    fi
    storm_rc=0
    wait "$storm_pid" || storm_rc=$?
    storm_pid=""
    cat "$work/$scenario.out"
    [ "$storm_rc" -eq 0 ] || { echo "crash test: $scenario: claims left unanswered" >&2; fail=1; }
    kill -TERM "$server_pid"
    wait "$server_pid" || { echo "crash test: hb-server did not stop cleanly" >&2; fail=1; }
    server_pid=""
    check_both_ways "$scenario" "$work/$scenario.log"
done

[ "$fail" -eq 0 ] && echo "crash test passed"
exit "$fail"
