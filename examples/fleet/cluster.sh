#!/usr/bin/env bash
# A throwaway Redis Cluster for examples/fleet/run.sh and the tests: 3 masters and 3 replicas of
# Debian's redis-server ($HB_REDIS_SERVER if set) on one address, $HB_REDIS_HOST (default
# 127.0.0.1), ports PORT_BASE..PORT_BASE+5 (cluster bus +10000; both below the kernel's ephemeral
# range, 32768.., so that no outgoing connection holds them), each under `timeout --signal=KILL`
# ($HB_REDIS_LIFETIME s, default 1200), its files and PIDs in DIR/<port>, its address in DIR/host
# (the other verbs use it), cluster-node-timeout $HB_REDIS_NODE_TIMEOUT ms (default 2000: fast
# failovers for the tests; Redis's own default is 15000). Everything is stopped by the PIDs it
# wrote.
# Usage: cluster.sh start DIR [PORT_BASE]  the cluster, created and waited for (default port base:
#                                         $HB_REDIS_PORT_BASE, else 21790); DIR/seeds has its nodes
#        cluster.sh stop DIR              stop every node (SIGTERM, then SIGKILL after 10 s)
#        cluster.sh kill DIR PORT         SIGKILL the node on PORT (a master dies)
#        cluster.sh restart DIR [PORT]    start that node (without PORT: every stopped node) again,
#                                         from its files, and wait until the cluster is ok
#        cluster.sh failover DIR PORT     CLUSTER FAILOVER on the replica on PORT; wait until master
#        cluster.sh wait DIR              wait until every live node says cluster_state:ok
set -euo pipefail
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,17p' "$0" >&2; exit 2; }
lifetime=${HB_REDIS_LIFETIME:-1200}
node_timeout=${HB_REDIS_NODE_TIMEOUT:-2000} # ms without an answer before a node is failed over
redis_server=${HB_REDIS_SERVER:-redis-server}
# The nodes' address: the one the cluster was started on, else $HB_REDIS_HOST, else loopback.
host=${HB_REDIS_HOST:-127.0.0.1}
[ "$cmd" != start ] && [ -s "$dir/host" ] && host=$(cat "$dir/host")
cli() { timeout 10 redis-cli -h "$host" -p "$1" "${@:2}"; }
# Redis refuses clients from other addresses than loopback unless protected mode is off (it has no
# password): off only on another address, which must be one of a network you control.
case $host in 127.*) protected=yes ;; *) protected=no ;; esac

# The PID in FILE if that process is still ours (its command line names our port), else nothing.
our_pid() {
    local file=$1 port=$2 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q ":$port\b\|--port $port\b"; then
        echo "$pid"
    fi
}

node_start() {
    local port=$1 d="$dir/$1"
    mkdir -p "$d"
    rm -f "$d/redis.pid"
    (cd "$d" && exec timeout --signal=KILL "$lifetime" "$redis_server" --bind "$host" --port "$port" \
        --protected-mode "$protected" --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout "$node_timeout" --cluster-replica-validity-factor 0 --appendonly yes \
        --appendfsync always --save '' \
        --dir "$d" --pidfile "$d/redis.pid" --logfile "$d/redis.log" --daemonize no \
        </dev/null >/dev/null 2>&1) &
    echo $! >"$d/timeout.pid"
    local deadline=$((SECONDS + 20))
    until [ "$(cli "$port" ping 2>/dev/null)" = "PONG" ] && [ -s "$d/redis.pid" ]; do
        [ $SECONDS -lt $deadline ] || { echo "cluster.sh: node $port did not start" >&2; tail -5 "$d/redis.log" >&2; return 1; }
        sleep 0.1
    done
}

ports() { cat "$dir/ports"; }

alive() { [ -n "$(our_pid "$dir/$1/redis.pid" "$1")" ]; }

# Every live node says cluster_state:ok with all 16384 slots; three of them are masters, the
# others replicas with their link up, and with all six up every master has its replica online.
wait_ok() {
    local deadline=$((SECONDS + ${1:-60})) p ok live masters
    while :; do
        ok=1 live=0 masters=0
        for p in $(ports); do alive "$p" && live=$((live + 1)); done
        for p in $(ports); do
            alive "$p" || continue
            info=$(cli "$p" cluster info 2>/dev/null || true)
            grep -q 'cluster_state:ok' <<<"$info" && grep -q 'cluster_slots_ok:16384' <<<"$info" || { ok=0; break; }
            repl=$(cli "$p" info replication 2>/dev/null || true)
            if grep -q 'role:master' <<<"$repl"; then
                masters=$((masters + 1))
                grep -q 'slave0:.*state=online' <<<"$repl" || [ "$live" -lt 6 ] || { ok=0; break; }
            elif ! grep -q 'master_link_status:up' <<<"$repl"; then
                ok=0
                break
            fi
        done
        [ $ok -eq 1 ] && [ $masters -eq 3 ] && return 0
        [ $SECONDS -lt $deadline ] || { echo "cluster.sh: the cluster did not become ok" >&2; return 1; }
        sleep 0.2
    done
}

stop_all() {
    [ -f "$dir/ports" ] || return 0
    local p pid
    for p in $(ports); do
        pid=$(our_pid "$dir/$p/timeout.pid" "$p")
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + 10))
    for p in $(ports); do
        while [ -n "$(our_pid "$dir/$p/redis.pid" "$p")" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        for f in redis.pid timeout.pid; do
            pid=$(our_pid "$dir/$p/$f" "$p")
            [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
        done
    done
}

case $cmd in
start)
    base=${3:-${HB_REDIS_PORT_BASE:-21790}}
    stop_all
    rm -rf "$dir"
    mkdir -p "$dir"
    seq "$base" $((base + 5)) >"$dir/ports"
    echo "$host" >"$dir/host"
    for p in $(ports); do
        for q in "$p" $((p + 10000)); do
            if (exec 3<>"/dev/tcp/$host/$q") 2>/dev/null; then
                echo "cluster.sh: port $q is taken (another cluster? set HB_REDIS_PORT_BASE)" >&2
                exit 1
            fi
        done
    done
    trap 'stop_all' ERR
    for p in $(ports); do node_start "$p"; done
    nodes=()
    for p in $(ports); do nodes+=("$host:$p"); done
    timeout 60 redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
        || { cat "$dir/create.log" >&2; false; }
    wait_ok 60
    (IFS=,; echo "${nodes[*]}") >"$dir/seeds"
    echo "cluster.sh: cluster up on $(cat "$dir/seeds")"
    ;;
stop)
    stop_all
    ;;
kill)
    pid=$(our_pid "$dir/$3/redis.pid" "$3")
    [ -n "$pid" ] || { echo "cluster.sh: no node of ours on $3" >&2; exit 1; }
    kill -KILL "$pid"
    ;;
restart)
    if [ -n "${3:-}" ]; then
        alive "$3" && { echo "cluster.sh: node $3 is running" >&2; exit 1; }
        node_start "$3"
    else
        for p in $(ports); do alive "$p" || node_start "$p"; done
    fi
    wait_ok 60
    ;;
failover)
    cli "$3" cluster failover >/dev/null
    deadline=$((SECONDS + 30))
    until cli "$3" role 2>/dev/null | head -1 | grep -q master; do
        [ $SECONDS -lt $deadline ] || { echo "cluster.sh: $3 did not become master" >&2; exit 1; }
        sleep 0.1
    done
    wait_ok 60
    ;;
wait)
    wait_ok 60
    ;;
*)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac
