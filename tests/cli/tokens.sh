#!/usr/bin/env bash
# The example programs refuse an empty bearer token (and one hb_http would refuse) as a usage
# error, exit status 2, before binding anything: `--control-token "$TOKEN"` with TOKEN unset must
# not serve the port without authentication. Each program runs under `timeout` (a program that
# starts instead of refusing is stopped by its PID after a few seconds and the check fails), on
# loopback only, in a scratch directory.
# Usage: tests/cli/tokens.sh BUILD_DIR
set -uo pipefail
bin=$(cd "${1:?usage: tokens.sh BUILD_DIR}" && pwd)/examples
work=$(mktemp -d /tmp/hb-tokens-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
fails=0

# expect_refused WHAT MESSAGE PROGRAM ARGS...: exit status 2 and MESSAGE on stderr.
expect_refused() {
    local what=$1 msg=$2 rc
    shift 2
    timeout -s TERM 5 "$@" >out.log 2>err.log
    rc=$?
    if [ "$rc" -ne 2 ] || ! grep -qF -- "$msg" err.log; then
        echo "FAIL: $what: exit status $rc (want 2), stderr: $(head -c 300 err.log)" >&2
        fails=$((fails + 1))
    else
        echo "ok: $what: $(cat err.log)"
    fi
}

closed=1 # a port nobody listens on: nothing is ever reached there
long=$(printf 't%.0s' $(seq 200))

expect_refused "hb-server --control-token ''" "--control-token needs a non-empty value" \
    "$bin/hb-server" --listen 127.0.0.1:0 --control 127.0.0.1:0 --ledger off --control-token ""
expect_refused "hb-server --control-token with a space" "--control-token: a token is" \
    "$bin/hb-server" --listen 127.0.0.1:0 --control 127.0.0.1:0 --ledger off --control-token "a b"
expect_refused "hb-client --control-token ''" "--control-token needs a non-empty value" \
    "$bin/hb-client" --server 127.0.0.1:$closed --min 0 --max 0 --control 127.0.0.1:0 \
    --duration 3 --control-token ""
expect_refused "hb-client --control-token too long" "--control-token: a token is" \
    "$bin/hb-client" --server 127.0.0.1:$closed --min 0 --max 0 --control 127.0.0.1:0 \
    --duration 3 --control-token "$long"
expect_refused "hb-monitor --http-token ''" "--http-token needs a non-empty value" \
    "$bin/hb-monitor" --listen 127.0.0.1:0 --http 127.0.0.1:0 --duration 3 --http-token ""

if [ "$fails" -gt 0 ]; then
    echo "tokens: $fails check(s) failed" >&2
    exit 1
fi
echo "tokens: every example refuses an empty or malformed token"
