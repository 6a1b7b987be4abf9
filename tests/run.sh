#!/usr/bin/env bash
# The whole test suite: installs what it needs, then builds and runs every test with gcc, with
# clang, under ASan+UBSan and under TSan, runs the fuzz targets briefly and checks formatting.
# Usage: tests/run.sh [--quick]    (--quick: the gcc build and its tests only)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${HB_FUZZ_SECONDS:-20}  # 8 targets: keeps CI inside its 20 minutes

"$root/.ci/deps.sh"

step() { printf '\n=== %s\n' "$*"; }

# build_and_test DIR CTEST_ENV... -- CMAKE_ARGS...
build_and_test() {
    local dir=$1
    shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    # -DHONGBAO_REDIS=ON: a missing hiredis fails the build instead of leaving the cluster client out.
    cmake -S "$root" -B "$dir" -DHONGBAO_BUILD_TESTS=ON -DHONGBAO_BUILD_EXAMPLES=ON -DHONGBAO_REDIS=ON "$@" >"$dir.configure.log" 2>&1 \
        || { cat "$dir.configure.log"; return 1; }
    cmake --build "$dir" -j "$jobs"
    (cd "$dir" && env "${envs[@]}" ctest --output-on-failure -j "$jobs")
}

mkdir -p "$root/_build"
step "gcc build and tests"
build_and_test "$root/_build/gcc" HB_TEST=1 -- -DCMAKE_C_COMPILER=gcc
[ $quick -eq 1 ] && exit 0

step "benchmarks, quick (figures only, nothing asserted)"
"$root/bench/run" --quick

step "clang build and tests"
build_and_test "$root/_build/clang" HB_TEST=1 -- -DCMAKE_C_COMPILER=clang

step "ASan + UBSan"
build_and_test "$root/_build/asan" CK_FORK=no ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 -- \
    -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DHONGBAO_SANITIZE=address,undefined

step "TSan"
build_and_test "$root/_build/tsan" CK_FORK=no TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 -- \
    -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHONGBAO_SANITIZE=thread

step "fuzz targets, ${fuzz_seconds}s each"
cmake -S "$root" -B "$root/_build/fuzz" -DCMAKE_C_COMPILER=clang -DHONGBAO_BUILD_FUZZ=ON \
    -DHONGBAO_BUILD_EXAMPLES=OFF -DHONGBAO_CONSUMER_TEST=OFF >"$root/_build/fuzz.configure.log" 2>&1 \
    || { cat "$root/_build/fuzz.configure.log"; exit 1; }
for src in "$root"/tests/fuzz/fuzz_*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    corpus="$root/tests/fuzz/corpus/${name#fuzz_}"
    work="$root/_build/fuzz/corpus-$name"
    rm -rf "$work" && mkdir -p "$work"
    [ -d "$corpus" ] && cp "$corpus"/* "$work"/ 2>/dev/null || true
    cmake --build "$root/_build/fuzz" --target "$name" -j "$jobs" >/dev/null
    "$root/_build/fuzz/tests/fuzz/$name" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
        "$work" 2>"$root/_build/fuzz/$name.log" || { tail -50 "$root/_build/fuzz/$name.log"; exit 1; }
    grep -E 'stat::number_of_executed_units' "$root/_build/fuzz/$name.log" | sed "s/^/$name: /"
done

step "clang-format"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find include lib examples tests -name '*.[ch]')
# shellcheck disable=SC2086
clang-format --dry-run -Werror $files

step "all test runs passed"
