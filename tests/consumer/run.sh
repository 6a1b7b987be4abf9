#!/usr/bin/env bash
# Install the built library into a temporary prefix, then build and run a consumer against it
# twice: through pkg-config (shared and static) and through find_package (shared and static).
# Usage: run.sh BUILD_DIR WORK_DIR [CC]
set -euo pipefail
build=$1 work=$2 cc=${3:-cc}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log"
libdir=$(find "$prefix" -name hongbao.pc -printf '%h\n' | head -n1 | xargs dirname)

echo "== pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
pkg-config --exists --print-errors hongbao
test "$(pkg-config --modversion hongbao)" = "$(grep -o '"[0-9.]*"' "$prefix/include/hongbao/version.h" | tr -d '"')"
# shellcheck disable=SC2046
"$cc" -Wall -Werror -o "$work/pc_shared" "$here/consumer.c" $(pkg-config --cflags --libs hongbao)
LD_LIBRARY_PATH="$libdir" "$work/pc_shared"
# shellcheck disable=SC2046
"$cc" -Wall -Werror -o "$work/pc_static" "$here/consumer.c" \
    $(pkg-config --cflags hongbao) "$libdir/libhongbao.a" $(pkg-config --libs --static hongbao | sed 's/-lhongbao//')
"$work/pc_static"
# The static binary must not need the shared library.
if ldd "$work/pc_static" | grep -q libhongbao; then
    echo "pc_static links libhongbao.so" >&2
    exit 1
fi

echo "== find_package"
cmake -S "$here" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" >"$work/cmake.log"
cmake --build "$work/cmake-build" >>"$work/cmake.log"
"$work/cmake-build/consumer_shared"
"$work/cmake-build/consumer_static"

echo "== exported symbols carry the hb_ prefix only"
bad=$(nm -D --defined-only "$libdir/libhongbao.so" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^hb_' || true)
if [ -n "$bad" ]; then
    echo "unexpected exported symbols: $bad" >&2
    exit 1
fi
echo "consumer test passed"
