#!/usr/bin/env bash
# Install slabkit into a scratch prefix, then build a program against it
# twice: with pkg-config and with find_package(slabkit).  Fails loudly.
set -euo pipefail
build=${1:-build}
prefix=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$prefix" "$work"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null

cat > "$work/hello.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <slabkit/linux/slab.h>
#define SLABKIT_FREEBSD_NAMES
#include <slabkit/freebsd/malloc.h>
MALLOC_DEFINE(M_HELLO, "hello", "install check");
int main(void)
{
	char *a = kmalloc(100, GFP_KERNEL);
	char *b = malloc(100, M_HELLO, M_WAITOK | M_ZERO);
	if (!a || !b || b[99] != 0)
		return 1;
	strcpy(a, "ok");
	printf("%s %s\n", a, slabkit_backend());
	free(b, M_HELLO);
	kfree(a);
	return 0;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
cc -std=gnu11 "$work/hello.c" -o "$work/hello_pc" $(pkg-config --cflags --libs slabkit) \
   -Wl,-rpath,"$(pkg-config --variable=libdir slabkit)"
out=$("$work/hello_pc")
echo "pkg-config build: $out"
[[ "$out" == ok* ]]

mkdir -p "$work/cm"
cat > "$work/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(hello C)
find_package(slabkit REQUIRED)
add_executable(hello ../hello.c)
target_link_libraries(hello PRIVATE slabkit::slabkit)
CM
cmake -S "$work/cm" -B "$work/cm/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cm/build" >/dev/null
out=$("$work/cm/build/hello")
echo "find_package build: $out"
[[ "$out" == ok* ]]
echo "install check passed"
