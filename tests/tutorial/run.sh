#!/usr/bin/env bash
# The tutorial's commands, as written: runs every ```sh block of docs/embedding.md in order, in one
# shell, with HOME a fresh directory holding a copy of this source tree as ~/libhongbao; checks
# that each ```c block is a run of lines of examples/lucky/lucky.c, that the packages the tutorial
# installs are ones .ci/deps.sh installs, and that the service's counters showed in /metrics.
# Usage: run.sh WORK_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$1
doc="$root/docs/embedding.md"
rm -rf "$work" && mkdir -p "$work/home"

# The C excerpts are the example's own lines.
python3 - "$doc" "$root/examples/lucky/lucky.c" <<'PY'
import sys
doc, src = open(sys.argv[1]).read(), open(sys.argv[2]).read()
blocks, cur = [], None
for line in doc.splitlines():
    if cur is None and line == "```c":
        cur = []
    elif cur is not None and line == "```":
        blocks.append("\n".join(cur) + "\n")
        cur = None
    elif cur is not None:
        cur.append(line)
for b in blocks:
    if b not in src:
        sys.exit("tutorial: this excerpt is not in lucky.c:\n" + b)
print("tutorial: %d C excerpts match examples/lucky/lucky.c" % len(blocks))
PY

# The packages it tells a user to install are among CI's.
apt_line=$(grep -m1 'apt-get install' "$doc")
for p in ${apt_line#*-y}; do
    case $p in
    build-essential) continue ;;
    esac
    grep -qw -- "$p" "$root/.ci/deps.sh" || { echo "tutorial: package $p is not in .ci/deps.sh" >&2; exit 1; }
done

# It serves on the fixed ports the tutorial names: say so plainly when something else has them.
for port in 7000 7001; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "tutorial: 127.0.0.1:$port is taken by another program: the tutorial's lucky needs it" >&2
        exit 1
    fi
done

# The sh blocks, in order, as one script.
awk '/^```sh$/ {on = 1; next} /^```$/ {on = 0} on' "$doc" >"$work/tutorial.sh"
echo "tutorial: $(grep -c . "$work/tutorial.sh") lines of commands"

# ~/libhongbao: this tree's files (tracked, and new ones not ignored), without builds or history.
(cd "$root" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) |
    (mkdir -p "$work/home/libhongbao" && cd "$work/home/libhongbao" && tar -xf -)

# Run it in a process group of its own, so that whatever it started goes when it is done.
set +e
HOME="$work/home" setsid timeout --kill-after=10 600 \
    bash -euo pipefail "$work/tutorial.sh" >"$work/out.log" 2>&1 &
pid=$!
wait $pid
rc=$?
set -e
kill -- -"$pid" 2>/dev/null || true
cat "$work/out.log"
if [ $rc -ne 0 ]; then
    echo "tutorial: the commands failed (exit $rc)" >&2
    exit 1
fi
grep -Eq '^hongbao_lucky_draws_total [1-9][0-9]*$' "$work/out.log" ||
    { echo "tutorial: no draws counted in /metrics" >&2; exit 1; }
grep -Eq '"lucky_draws":[1-9]' "$work/out.log" ||
    { echo "tutorial: no draws in /stats" >&2; exit 1; }
grep -q '^split: 1000 cents in 5 shares' "$work/out.log" ||
    { echo "tutorial: the core-only program did not run" >&2; exit 1; }
echo "tutorial passed"
