# Sourced by the example scripts (examples/seed/run.sh, examples/fleet/run.sh): the processes a
# script starts, each recorded by PID and name, watched while the script waits, and stopped by PID.
# The script defines fail MESSAGE (report and exit) and sets $out (where the logs go); it may
# define proc_ended NAME, called before fail when NAME ended unexpectedly (to say why, or exit
# otherwise).

procs_pids=() procs_names=()

# launch NAME COMMAND...: start it in the background, its output in $out/NAME.log; its PID is
# recorded in $out/pids.
launch() {
    local name=$1
    shift
    "$@" >"$out/$name.log" 2>&1 &
    procs_pids+=($!)
    procs_names+=("$name")
    echo "$name $!" >>"$out/pids"
}

# pid_of NAME: the PID NAME was launched with.
pid_of() {
    local i
    for i in "${!procs_names[@]}"; do
        [ "${procs_names[$i]}" = "$1" ] && { echo "${procs_pids[$i]}"; return 0; }
    done
    return 1
}

# forget NAME: no longer watched nor stopped (it ended, or was made to).
forget() {
    local i
    for i in "${!procs_names[@]}"; do
        [ "${procs_names[$i]}" = "$1" ] && unset "procs_pids[$i]" "procs_names[$i]"
    done
    return 0
}

# stop NAME: SIGTERM to it and wait; fails unless it exited 0.
stop() {
    local pid rc=0
    pid=$(pid_of "$1") || fail "stop: no process called $1"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || rc=$?
    forget "$1"
    [ "$rc" -eq 0 ] || fail "$1 (pid $pid) exited with status $rc when stopped"
}

# stop_all: SIGTERM to every process still watched, and wait for each (for an EXIT trap).
stop_all() {
    local p
    for p in "${procs_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${procs_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    procs_pids=() procs_names=()
}

# Every process watched is still running, or the run fails naming the one that ended.
check_alive() {
    local i
    for i in "${!procs_pids[@]}"; do
        kill -0 "${procs_pids[$i]}" 2>/dev/null && continue
        declare -F proc_ended >/dev/null && proc_ended "${procs_names[$i]}"
        fail "${procs_names[$i]} (pid ${procs_pids[$i]}) ended unexpectedly"
    done
}

now_ms() { date +%s%3N; }

# wait_until MS: until the wall clock reaches MS (milliseconds), watching the processes.
wait_until() {
    while [ "$(now_ms)" -lt "$1" ]; do
        check_alive
        sleep 0.1
    done
}

# wait_for SECONDS WHAT COMMAND...: poll COMMAND until it succeeds, watching the processes.
wait_for() {
    local secs=$1 thing=$2 deadline=$(($(now_ms) + $1 * 1000))
    shift 2
    until "$@"; do
        check_alive
        [ "$(now_ms)" -lt "$deadline" ] || fail "no $thing within $secs s"
        sleep 0.1
    done
}

# printed NAME PATTERN: NAME's log has PATTERN; port_in NAME SEDSCRIPT: the first line sed
# prints of it.
printed() { grep -q "$2" "$out/$1.log" 2>/dev/null; }
port_in() { sed -n "$2" "$out/$1.log" | head -1; }
