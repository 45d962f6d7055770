#!/bin/sh
# Install smoke test: install the build into a temporary prefix, then build
# and run a small program against the installed headers and libraries three
# ways: CMake find_package, pkg-config (shared library), and the static
# archive.
#
# Usage: test_install.sh <build-dir> [C compiler]
# Registered by tests/CMakeLists.txt as ctest "install".
set -eu

build=${1:?usage: test_install.sh <build-dir> [cc]}
cc=${2:-cc}
work=$(mktemp -d "${TMPDIR:-/tmp}/slabkit-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 || {
	cat "$work/install.log"
	echo "install: cmake --install failed" >&2
	exit 1
}
for f in include/slabkit/slabkit.h include/slabkit/linux/slab.h \
	include/slabkit/freebsd/malloc.h include/slabkit/freebsd/uma.h; do
	[ -f "$prefix/$f" ] || { echo "install: $f missing" >&2; exit 1; }
done
# The live view is installed with the library.
[ -x "$prefix/bin/slabkit-stat" ] || { echo "install: bin/slabkit-stat missing" >&2; exit 1; }
libdir=$(dirname "$(find "$prefix" -name slabkit.pc | head -n 1)")
libdir=$(dirname "$libdir")
[ -f "$libdir/libslabkit.a" ] || { echo "install: libslabkit.a missing" >&2; exit 1; }

cat >"$work/consumer.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#define SLABKIT_FREEBSD_NAMES
#include <slabkit/freebsd/uma.h>
#include <slabkit/linux/slab.h>

MALLOC_DEFINE(M_CONSUMER, "consumer", "install test");

int main(void)
{
	char *k = kmalloc(100, GFP_KERNEL);
	char *m = malloc(200, M_CONSUMER, M_WAITOK | M_ZERO);
	uma_zone_t z = uma_zcreate("consumer_zone", 64, NULL, NULL, NULL, NULL, UMA_ALIGN_PTR, 0);
	void *item = z ? uma_zalloc(z, M_WAITOK) : NULL;
	if (!k || !m || !item || m[199] != 0 || ksize(k) < 100) {
		fprintf(stderr, "consumer: allocation failed\n");
		return 1;
	}
	strcpy(k, "ok");
	uma_zfree(z, item);
	uma_zdestroy(z);
	free(m, M_CONSUMER);
	printf("%s %s\n", k, slabkit_backend());
	kfree(k);
	return 0;
}
EOF

# CMake package.
mkdir -p "$work/cm"
cp "$work/consumer.c" "$work/cm/"
cat >"$work/cm/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(consumer C)
find_package(slabkit 0.1 REQUIRED)
add_executable(consumer consumer.c)
target_link_libraries(consumer PRIVATE slabkit::slabkit)
EOF
cmake -S "$work/cm" -B "$work/cm/build" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_C_COMPILER="$cc" >"$work/cm.log" 2>&1 &&
	cmake --build "$work/cm/build" >>"$work/cm.log" 2>&1 || {
	cat "$work/cm.log"
	echo "install: find_package(slabkit) consumer did not build" >&2
	exit 1
}
out=$(LD_LIBRARY_PATH="$libdir" "$work/cm/build/consumer")
case $out in ok\ *) ;; *) echo "install: CMake consumer printed '$out'" >&2; exit 1 ;; esac

export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

# The .pc file must describe where it was installed, not the configure-time
# prefix.  If it does not, report it and check the rest with the prefix
# pkg-config derives from the file's location.
status=0
pc_libdir=$(pkg-config --variable=libdir slabkit)
pc_define=
if [ "$(cd "$pc_libdir" 2>/dev/null && pwd -P)" != "$(cd "$libdir" && pwd -P)" ]; then
	echo "install: slabkit.pc installed under $libdir says libdir=$pc_libdir" \
		"(the configure-time prefix is baked in; a relocatable .pc uses \${pcfiledir})" >&2
	status=1
	pc_define=--define-prefix
fi

# Shared library through pkg-config.
$cc -std=gnu11 -o "$work/consumer_shared" "$work/consumer.c" \
	$(pkg-config $pc_define --cflags --libs slabkit)
out=$(LD_LIBRARY_PATH="$libdir" "$work/consumer_shared")
case $out in ok\ *) ;; *) echo "install: shared consumer printed '$out'" >&2; exit 1 ;; esac

# Static libslabkit.a with its dependencies (as shared libraries: a fully
# static link needs static builds of hwloc's own dependencies, e.g. libudev).
$cc -std=gnu11 -o "$work/consumer_static" "$work/consumer.c" \
	$(pkg-config $pc_define --cflags slabkit) "$libdir/libslabkit.a" \
	$(pkg-config --libs ck hwloc liburcu-memb) -lpthread
out=$("$work/consumer_static")
case $out in ok\ *) ;; *) echo "install: static consumer printed '$out'" >&2; exit 1 ;; esac
if ldd "$work/consumer_static" | grep -q libslabkit; then
	echo "install: the static consumer links libslabkit.so" >&2
	exit 1
fi

# The benchmark is installed with the library and finds it from bin/.
if [ -e "$build/tools/slabkit-bench" ]; then
	bench=$(find "$prefix" -path '*/bin/slabkit-bench' | head -n 1)
	[ -x "$bench" ] || { echo "install: bin/slabkit-bench missing" >&2; exit 1; }
	"$bench" --list | grep -q '^allocators: glibc' || {
		echo "install: the installed slabkit-bench does not run (finding libslabkit.so?)" >&2
		exit 1
	}
fi

[ $status -eq 0 ] && echo "install: headers, find_package, pkg-config (shared, static) all work"
exit $status
