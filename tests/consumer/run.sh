#!/usr/bin/env bash
# Install the built library into a temporary prefix, then build and run a consumer (a server program
# that serves a login and a shake) against it: through pkg-config and through find_package, shared
# and static; and the core alone. Everything runs from the prefix as it is: no LD_LIBRARY_PATH.
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
"$work/pc_shared"
# shellcheck disable=SC2046
"$cc" -Wall -Werror -o "$work/pc_static" "$here/consumer.c" \
    $(pkg-config --cflags hongbao) "$libdir/libhongbao.a" $(pkg-config --libs --static hongbao | sed 's/-lhongbao//')
"$work/pc_static"
# The static binary must not need the shared library.
if ldd "$work/pc_static" | grep -q libhongbao; then
    echo "pc_static links libhongbao.so" >&2
    exit 1
fi

echo "== pkg-config, the core alone (strict C11, no _DEFAULT_SOURCE, no libuv)"
pkg-config --exists --print-errors hongbao-core
if pkg-config --cflags --libs hongbao-core | grep -q uv; then
    echo "hongbao-core.pc mentions libuv" >&2
    exit 1
fi
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -o "$work/core_shared" "$here/consumer_core.c" \
    $(pkg-config --cflags --libs hongbao-core)
"$work/core_shared"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -o "$work/core_static" "$here/consumer_core.c" \
    $(pkg-config --cflags hongbao-core) "$libdir/libhongbao-core.a" \
    $(pkg-config --libs --static hongbao-core | sed 's/-lhongbao-core//')
"$work/core_static"
if ldd "$work/core_shared" | grep -q libuv; then
    echo "the core-only program links libuv" >&2
    exit 1
fi

echo "== find_package"
cmake -S "$here" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" >"$work/cmake.log"
cmake --build "$work/cmake-build" >>"$work/cmake.log"
"$work/cmake-build/consumer_shared"
"$work/cmake-build/consumer_static"
"$work/cmake-build/consumer_core_shared"
"$work/cmake-build/consumer_core_static"
if ldd "$work/cmake-build/consumer_core_shared" | grep -q libuv; then
    echo "consumer_core_shared (hongbao::hongbao_core) links libuv" >&2
    exit 1
fi

echo "== the installed tools run from the prefix"
for tool in hb-server hb-client hb-monitor hb-audit; do
    if [ -x "$prefix/bin/$tool" ]; then
        "$prefix/bin/$tool" --help >/dev/null
    fi
done

echo "== exported symbols carry the hb_ prefix only"
bad=$(nm -D --defined-only "$libdir/libhongbao.so" "$libdir/libhongbao-core.so" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^hb_' || true)
if [ -n "$bad" ]; then
    echo "unexpected exported symbols: $bad" >&2
    exit 1
fi
echo "consumer test passed"
