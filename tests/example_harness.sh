# Sourced by the tests of the example scripts (tests/seed/run.sh, tests/fleet/example.sh): one
# run of the script at a time in the background, bounded, its output in $work/NAME.out, stopped
# at exit; and the check that nothing it started outlived it. The test sets $work, $script (the
# example script), script_args (options every run gets) and bg_limit (seconds a run may take).

bg_pid=""
cleanup() {
    [ -z "$bg_pid" ] && return
    kill -TERM "$bg_pid" 2>/dev/null || true
    wait "$bg_pid" 2>/dev/null || true
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    local f
    for f in "$work"/*.out; do
        [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -25 "$f" >&2; }
    done
    exit 1
}

# start_bg NAME ARGS...: the script in the background with --out $work/NAME.
start_bg() {
    local name=$1
    shift
    timeout "$bg_limit" "$script" "${script_args[@]}" --out "$work/$name" "$@" >"$work/$name.out" 2>&1 &
    bg_pid=$!
}

# wait_printed NAME PATTERN SECONDS: the background script printed PATTERN.
wait_printed() {
    local deadline=$(($(date +%s) + $3))
    until grep -q "$2" "$work/$1.out" 2>/dev/null; do
        kill -0 "$bg_pid" 2>/dev/null || fail "$1: the script ended before printing '$2'"
        [ "$(date +%s)" -lt "$deadline" ] || fail "$1: no '$2' within $3 s"
        sleep 0.1
    done
}

# finish: wait for the background script; its exit status in rc.
finish() {
    rc=0
    wait "$bg_pid" || rc=$?
    bg_pid=""
}

# running PID: the process exists and has not exited (a zombie, exited but not yet reaped by the
# init it was handed to, has).
running() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]; }

# none_alive DIR [FILE...]: no process the script recorded in DIR/pids ("name pid" lines) nor in
# the FILEs ("name pid" lines, or a bare PID) runs any more.
none_alive() {
    local dir=$1 f line name pid left=""
    [ -s "$dir/pids" ] || fail "$dir/pids lists no process"
    for f in "$dir/pids" "${@:2}"; do
        [ -s "$f" ] || continue
        while read -r line; do
            pid=${line##* } name=$f
            [[ $line == *" "* ]] && name=${line% *}
            running "$pid" && left="$left $name($pid)"
        done <"$f"
    done
    [ -z "$left" ] || fail "still running after the script ended:$left"
}
