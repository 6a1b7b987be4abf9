#!/usr/bin/env bash
# hb-client over a list of servers, as a person runs it: `--servers A:P,B:P,C:P` against three
# hb-server processes on free loopback ports. Every user logs in; one server is SIGKILLed once all
# are in; the summary must then count exactly its users as failovers (reconnects and disconnects
# alike), that number computed here independently of the library, in Python, from the ring's
# documented rule (hongbao/ring.h: FNV-1a then splitmix64's finaliser), so another language
# routes users as the client does. A malformed or repeated list entry is a usage error (exit 2).
# Every process runs under `timeout` and is stopped by its PID; traffic stays on 127.0.0.1.
# Usage: tests/cli/servers.sh BUILD_DIR
set -uo pipefail
bin=$(cd "${1:?usage: servers.sh BUILD_DIR}" && pwd)/examples
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/hb-servers-XXXXXX)
users=300
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1

fail() {
    echo "FAIL: $*" >&2
    for f in server*.out client.out client.err; do
        [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -8 "$f" >&2; }
    done
    exit 1
}

# wait_for SECONDS COMMAND...
. "$here/../wait_for.sh"

# ---- usage errors ----
expect_usage() {
    local what=$1 msg=$2 rc
    shift 2
    timeout -s TERM 5 "$bin/hb-client" --min 0 --max 0 --control off --duration 1 "$@" \
        >usage.out 2>usage.err
    rc=$?
    [ "$rc" -eq 2 ] && grep -qF -- "$msg" usage.err ||
        fail "$what: exit status $rc (want 2), stderr: $(head -c 300 usage.err)"
    echo "ok: $what: $(cat usage.err)"
}
expect_usage "a name in the list" "is not" --servers 127.0.0.1:5,localhost:6
expect_usage "an address twice" "listed twice" --servers 127.0.0.1:5,127.0.0.1:6,127.0.0.1:05
expect_usage "an empty entry" "is not" --servers 127.0.0.1:5,

# ---- three servers, one killed ----
ports=()
for i in 0 1 2; do
    timeout -s KILL 60 "$bin/hb-server" --listen 127.0.0.1:0 --control off --ledger off \
        --threads 1 --nic off --seed $((i + 1)) >"server$i.out" 2>&1 &
    pids+=($!)
    spid[$i]=$!
done
for i in 0 1 2; do
    wait_for 10 grep -q "listening on" "server$i.out" || fail "hb-server $i did not start"
    ports[$i]=$(sed -n 's/^hb-server: listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "server$i.out")
done
list="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"

# The users the ring gives server 1, computed from the rule alone.
expect=$(python3 - "$users" "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" "127.0.0.1:${ports[2]}" <<'EOF'
import sys
M = (1 << 64) - 1
def mix(x):
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)
def key(name):
    h = 14695981039346656037
    for c in name.encode():
        h = ((h ^ c) * 1099511628211) & M
    return mix(h)
users, names = int(sys.argv[1]), sys.argv[2:]
keys = [key(n) for n in names]
def pick(u):
    um = mix((u + 0x9E3779B97F4A7C15) & M)
    return max(range(len(keys)), key=lambda i: (mix(keys[i] ^ um), keys[i], -i))
print(sum(1 for u in range(users) if pick(u) == 1))
EOF
) || fail "python3 could not compute the ring"
[ "$expect" -gt 0 ] || fail "no user on server 1 (the ring computed $expect)"

timeout -s KILL 60 "$bin/hb-client" --servers "$list" --min 0 --max $((users - 1)) \
    --qps "$users" --control off --duration 8 >client.out 2>client.err &
cpid=$!
pids+=("$cpid")
wait_for 20 grep -q "^hb-client: $users/$users connected" client.err ||
    fail "the users did not all log in"
# SIGKILL to hb-server itself (the child of its `timeout`): its connections die with it.
victim=$(pgrep -P "${spid[1]}") || fail "no hb-server under timeout pid ${spid[1]}"
kill -KILL "$victim"
wait "${spid[1]}" 2>/dev/null
wait "$cpid" || fail "hb-client exited with status $?"
summary=$(grep '^summary:' client.out) || fail "no summary line"
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$summary"; }
echo "servers: $list; server 1 held $expect users by the ring; client: failovers=$(field failovers)" \
    "reconnects=$(field reconnects) disconnects=$(field disconnects)"
[ "$(field failovers)" = "$expect" ] || fail "failovers=$(field failovers), want $expect"
[ "$(field reconnects)" = "$expect" ] || fail "reconnects=$(field reconnects), want $expect"
[ "$(field disconnects)" = "$expect" ] || fail "disconnects=$(field disconnects), want $expect"
grep -q "by consistent hashing" client.out || fail "hb-client did not say how it routes"
for i in 0 2; do kill -TERM "${spid[$i]}"; done
echo "servers: hb-client fails a killed server's users over to their next, and only them"
