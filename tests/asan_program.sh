#!/bin/sh
# ctest "asan_program": a program built with AddressSanitizer over this
# build's libslabkit.so, which is built without it, still sees a use after
# free of a kmem_cache object, and a write past a large kmalloc block:
# slabkit finds ASan's interface at run time
# (weak references, core/sanitize.c).  With SLABKIT_SANITIZE=off it must
# not (the check itself is live).
#   asan_program.sh BUILD_DIR SOURCE_DIR CC
set -u
build=$1 src=$2 cc=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/uaf.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <slabkit/linux/slab.h>
int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "large")) { /* one byte past a page-path block */
		unsigned char *big = kmalloc(70000, GFP_KERNEL);
		memset(big, 1, 70000);
		volatile unsigned char *q = big;
		q[70000] = 2;
		printf("wrote past kmalloc(70000)\n");
		return 0;
	}
	struct kmem_cache *s = kmem_cache_create("uaf", 64, 0, 0, NULL);
	unsigned char *p = kmem_cache_alloc(s, GFP_KERNEL);
	memset(p, 1, 64);
	kmem_cache_free(s, p);
	volatile unsigned char *q = p;
	printf("read after free: %d\n", q[10]);
	return 0;
}
C
if ! "$cc" -fsanitize=address -g -o "$dir/uaf" "$dir/uaf.c" -I"$src/include" -L"$build" -lslabkit 2>"$dir/cc.log"; then
  echo "skipped: $cc cannot build with -fsanitize=address: $(head -2 "$dir/cc.log")"
  exit 0
fi
export LD_LIBRARY_PATH="$build" SLABKIT_TICK_MS=-1 ASAN_OPTIONS=detect_leaks=0
if "$dir/uaf" > "$dir/on.log" 2>&1 || ! grep -q "AddressSanitizer: use-after-poison" "$dir/on.log"; then
  echo "FAIL: ASan did not report the use after free of a slab object:"; cat "$dir/on.log"; exit 1
fi
if "$dir/uaf" large > "$dir/large.log" 2>&1 || ! grep -q "AddressSanitizer: use-after-poison" "$dir/large.log"; then
  echo "FAIL: ASan did not report the overrun of a large kmalloc block:"; cat "$dir/large.log"; exit 1
fi
if ! SLABKIT_SANITIZE=off "$dir/uaf" > "$dir/off.log" 2>&1; then
  echo "FAIL: with SLABKIT_SANITIZE=off the program should run through:"; cat "$dir/off.log"; exit 1
fi
echo "ok: ASan reports the use after free and the large block's overrun through a non-ASan libslabkit.so"
