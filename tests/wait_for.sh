# Sourced by the test scripts: wait_for SECONDS COMMAND... polls COMMAND every 0.2 s until it
# succeeds; returns 1 when time runs out.
wait_for() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
